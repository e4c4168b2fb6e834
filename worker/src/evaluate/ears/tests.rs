//! Tests of the EARS reading: each pattern and its parts, each kind of mistake, the messages.

use super::*;
use pretty_assertions::assert_eq;

fn clause(keyword: EarsKeyword, text: &str) -> EarsClause {
    EarsClause {
        keyword,
        text: text.into(),
    }
}

#[test]
fn every_pattern_is_recognised() {
    let cases = [
        ("The CLI shall print the version.", EarsPattern::Ubiquitous),
        (
            "the worker SHALL not write outside the workspace",
            EarsPattern::Ubiquitous,
        ),
        (
            "The parser, lexer and checker shall report byte offsets.",
            EarsPattern::Ubiquitous,
        ),
        (
            "When the user submits the form, the system shall store the entry.",
            EarsPattern::EventDriven,
        ),
        (
            "When the user selects red, green or blue, the UI shall repaint the swatch.",
            EarsPattern::EventDriven,
        ),
        (
            "WHEN the user clicks save THEN the system SHALL store the file",
            EarsPattern::EventDriven,
        ),
        (
            "WHEN the user clicks save THE SYSTEM SHALL store the file",
            EarsPattern::EventDriven,
        ),
        (
            "When the user clicks save the system shall store the file.",
            EarsPattern::EventDriven,
        ),
        (
            "While the upload is in progress, the page shall show a bar.",
            EarsPattern::StateDriven,
        ),
        (
            "If the disk is full, then the worker shall stop with exit code 3.",
            EarsPattern::Unwanted,
        ),
        (
            "If the disk is full then the worker shall stop.",
            EarsPattern::Unwanted,
        ),
        (
            "IF the token expired, the API shall answer 401.",
            EarsPattern::Unwanted,
        ),
        (
            "Where dark mode is enabled, the app shall use the dark palette.",
            EarsPattern::Optional,
        ),
        (
            "While offline, when the user saves, the app shall queue the change.",
            EarsPattern::Complex,
        ),
        (
            "Where sync is enabled, if the server rejects a change, then the app shall keep the local copy.",
            EarsPattern::Complex,
        ),
    ];
    for (text, pattern) in cases {
        assert_eq!(classify(text), Ok(pattern), "{text}");
    }
}

#[test]
fn the_reading_names_clauses_system_and_response() {
    assert_eq!(
        read("WHILE the app is offline WHEN the user saves a note THEN the app SHALL queue it."),
        Ok(Reading {
            pattern: EarsPattern::Complex,
            clauses: vec![
                clause(EarsKeyword::While, "the app is offline"),
                clause(EarsKeyword::When, "the user saves a note"),
            ],
            system: "the app".into(),
            response: "queue it".into(),
        })
    );
    assert_eq!(
        read("When a job finishes Omoi shall post the result."),
        Ok(Reading {
            pattern: EarsPattern::EventDriven,
            clauses: vec![clause(EarsKeyword::When, "a job finishes")],
            system: "Omoi".into(),
            response: "post the result".into(),
        })
    );
    assert_eq!(
        read("The billing service shall send one invoice per month."),
        Ok(Reading {
            pattern: EarsPattern::Ubiquitous,
            clauses: vec![],
            system: "The billing service".into(),
            response: "send one invoice per month".into(),
        })
    );
}

#[test]
fn non_ears_texts_are_rejected_with_the_reason() {
    let cases = [
        ("   ", EarsError::Empty),
        ("Login page with a remember-me box.", EarsError::NoShall),
        (
            "The system should log every request.",
            EarsError::WrongModal {
                modal: "should".into(),
            },
        ),
        (
            "The system shall log in users and shall send a welcome email.",
            EarsError::MultipleShall { count: 2 },
        ),
        ("The system shall.", EarsError::NoResponse),
        ("Shall export a CSV file.", EarsError::NoSystem),
        (
            "When the user clicks save, shall store the file.",
            EarsError::MissingSystem {
                keyword: EarsKeyword::When,
            },
        ),
        (
            "When , the system shall beep.",
            EarsError::EmptyPrecondition {
                keyword: EarsKeyword::When,
            },
        ),
        (
            "Once the file is saved, the system shall close it.",
            EarsError::NotAPrecondition {
                word: "Once".into(),
            },
        ),
        (
            "Then the app shall clear the cache.",
            EarsError::ThenWithoutCondition,
        ),
        (
            "Additionally, the system shall log every request.",
            EarsError::LeadIn {
                word: "Additionally".into(),
            },
        ),
        (
            "All requests shall be logged by the gateway.",
            EarsError::Passive {
                phrase: "be logged".into(),
            },
        ),
        (
            "The system shall retry the upload when the network returns.",
            EarsError::BuriedTrigger {
                word: "when".into(),
                keyword: EarsKeyword::When,
            },
        ),
        (
            "The system, if the disk is full, shall stop.",
            EarsError::TriggerInSystem {
                word: "if".into(),
                keyword: EarsKeyword::If,
            },
        ),
        (
            "The data that is stored shall expire after a day.",
            EarsError::NotASystem {
                text: "The data that is stored".into(),
                verb: "is".into(),
            },
        ),
        (
            "It shall export a CSV file.",
            EarsError::Pronoun { word: "It".into() },
        ),
        (
            "The user shall be able to reset the password.",
            EarsError::PersonAsSystem {
                text: "The user".into(),
                person: "user".into(),
            },
        ),
    ];
    for (text, error) in cases {
        assert_eq!(read(text), Err(error), "{text}");
    }
}

#[test]
fn errors_say_what_is_wrong_and_how_to_fix_it() {
    assert_eq!(
        EarsError::MissingSystem {
            keyword: EarsKeyword::When
        }
        .to_string(),
        "the WHEN clause runs into SHALL without naming the system that responds: write \
         \"WHEN <…>, the <system> shall …\""
    );
    assert_eq!(
        EarsError::Passive {
            phrase: "be logged".into()
        }
        .to_string(),
        "passive voice (\"shall be logged\") hides who acts: make the system that does it the \
         subject (\"The <system> shall <verb> …\")"
    );
    assert_eq!(
        EarsError::BuriedTrigger {
            word: "when".into(),
            keyword: EarsKeyword::When
        }
        .to_string(),
        "a condition (\"when …\") is buried after the response: put it first (\"WHEN <…>, the \
         <system> shall …\")"
    );
}

#[test]
fn quoted_words_are_content() {
    assert_eq!(
        classify("The linter shall flag the word \"shall\" when it is lowercase."),
        Err(EarsError::BuriedTrigger {
            word: "when".into(),
            keyword: EarsKeyword::When
        })
    );
    assert_eq!(
        classify("The CLI shall print \"when ready\" on start."),
        Ok(EarsPattern::Ubiquitous)
    );
}

#[test]
fn shall_is_a_whole_word() {
    assert_eq!(
        classify("The pool shall stay shallow."),
        Ok(EarsPattern::Ubiquitous)
    );
    assert_eq!(classify("A shallow copy."), Err(EarsError::NoShall));
}

#[test]
fn vague_terms_are_found_once_in_order_preferring_phrases() {
    assert_eq!(
        vague_terms(
            "The UI shall be fast, user-friendly and robust; retry as appropriate, etc. Fast!"
        ),
        vec!["fast", "user-friendly", "robust", "as appropriate", "etc"]
    );
    assert_eq!(
        vague_terms("Respond as soon as possible."),
        vec!["as soon as possible"]
    );
    assert_eq!(
        vague_terms("The API shall answer within 200 ms at the 99th percentile."),
        Vec::<String>::new()
    );
    assert_eq!(vague_terms("breakfast and steady"), Vec::<String>::new());
}
