//! The evaluators fed arbitrary and large generated input: no panic, and verdicts that hold
//! together (a pass has no blocking issue, SYNC agrees with the tasks gate on the graph).

use omoi_protocol::artifact::{
    Component, DesignOutput, Priority, Requirement, RequirementKind, RequirementsOutput,
    TasksOutput,
};
use omoi_protocol::context::PhaseContext;
use omoi_protocol::eval::Evaluation;

use super::graph::tests::{Random, task};
use super::{design, ears, requirements, sync, tasks};

const WORDS: [&str; 32] = [
    "WHEN",
    "when",
    "While",
    "IF",
    "if",
    "THEN",
    "then",
    "Where",
    "the",
    "system",
    "SHALL",
    "shall",
    "be",
    "logged",
    "user",
    ",",
    ";",
    "\"",
    "`",
    "“",
    "”",
    "'",
    "é",
    "😀",
    "REQ-A-001",
    "API",
    "once",
    "is",
    "It",
    "Also",
    "\u{0301}",
    "   ",
];

fn sentence(random: &mut Random, words: usize) -> String {
    let mut text = String::new();
    for _ in 0..words {
        text.push_str(WORDS[random.below(WORDS.len())]);
        if random.below(3) > 0 {
            text.push(' ');
        }
    }
    text
}

fn sound(evaluation: &Evaluation) {
    if evaluation.passed {
        assert!(
            evaluation.issues.iter().all(|i| !i.blocking),
            "{evaluation:?}"
        );
    }
    assert!((0.0..=1.0).contains(&evaluation.score), "{evaluation:?}");
}

#[test]
fn the_ears_reading_survives_arbitrary_text() {
    let mut random = Random::new(3);
    for round in 0..20_000 {
        let words = if round % 5_000 == 0 {
            200_000
        } else {
            random.below(30)
        };
        let text = sentence(&mut random, words);
        if let Ok(reading) = ears::read(&text) {
            assert!(!reading.system.is_empty(), "{text:?}");
            assert!(!reading.response.is_empty(), "{text:?}");
        }
        ears::vague_terms(&text);
    }
}

#[test]
fn the_evaluators_survive_large_random_specs() {
    let mut random = Random::new(5);
    for round in 0..40 {
        let n = if round % 10 == 0 {
            50_000
        } else {
            1 + random.below(60)
        };
        let requirements = RequirementsOutput {
            requirements: (0..1 + n / 10)
                .map(|i| Requirement {
                    id: format!("REQ-R-{:03}", random.below(n)),
                    title: sentence(&mut random, 3),
                    text: sentence(&mut random, 12),
                    kind: [RequirementKind::Functional, RequirementKind::Process][i % 2],
                    priority: Priority::Low,
                    acceptance_criteria: vec![sentence(&mut random, 4)],
                })
                .collect(),
        };
        let names: Vec<String> = (0..n)
            .map(|i| format!("T{}", random.below(n) + i % 3))
            .collect();
        let tasks = TasksOutput {
            tasks: (0..n)
                .map(|i| {
                    let deps: Vec<&str> = (0..random.below(4))
                        .map(|_| names[random.below(n)].as_str())
                        .collect();
                    let mut t = task(&names[i], random.below(60) as f64 - 5.0, &deps);
                    t.requirements = vec![format!("REQ-R-{:03}", random.below(n))];
                    t
                })
                .collect(),
        };
        let design = DesignOutput {
            overview: sentence(&mut random, 30),
            components: (0..random.below(5))
                .map(|_| Component {
                    name: sentence(&mut random, 2),
                    responsibility: sentence(&mut random, 5),
                    interfaces: vec![],
                    requirements: vec![format!("REQ-R-{:03}", random.below(n))],
                })
                .collect(),
            data_models: vec![],
            apis: vec![],
            error_handling: sentence(&mut random, 5),
            testing_strategy: String::new(),
            security: sentence(&mut random, 20),
        };
        sound(&requirements::evaluate(&requirements, 0.7));
        sound(&design::evaluate(&design, Some(&requirements), 0.7));
        let gate = tasks::evaluate(&tasks, Some(&requirements), None, 0.7);
        sound(&gate);
        let analysis = sync::analyze(&requirements, &tasks);
        let ctx = PhaseContext {
            requirements: Some(requirements.clone()),
            tasks: Some(tasks.clone()),
            ..PhaseContext::default()
        };
        let verdict = sync::evaluate(&analysis, &ctx, 0.7);
        sound(&verdict);
        // What SYNC finds ready, the tasks gate found free of blocking issues.
        if analysis.ready_for_execution {
            assert!(gate.issues.iter().all(|i| !i.blocking), "{:?}", gate.issues);
        }
    }
}
