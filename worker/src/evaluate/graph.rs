//! The dependency graph of a spec's tasks: what is wrong with it (duplicate ids, unknown and self
//! dependencies, cycles), the order and waves it allows, and its critical path.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use omoi_protocol::artifact::SpecTask;

use super::ids::{self, Id, compare};

/// The tasks as a graph: a node per distinct id (the first task with an id wins), an edge from each
/// task to each of its known dependencies other than itself.
#[derive(Debug)]
pub(crate) struct TaskGraph<'a> {
    nodes: Vec<&'a SpecTask>,
    /// For each node, the nodes it depends on (deduplicated, in the order written).
    deps: Vec<Vec<usize>>,
    /// Ids used by more than one task, each once, in order of first repetition.
    pub(crate) duplicates: Vec<String>,
    /// `(task, dependency)` for every dependency on an id no task has.
    pub(crate) unknown: Vec<(String, String)>,
    /// Tasks that depend on themselves.
    pub(crate) self_dependent: Vec<String>,
}

/// What a topological sort of the graph yields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ordering {
    /// Every task that can be ordered, dependencies first; ties go to the smaller id.
    pub(crate) order: Vec<String>,
    /// Waves of tasks: wave n depends only on waves before it; each wave sorted by id.
    pub(crate) waves: Vec<Vec<String>>,
    /// Each dependency cycle as a path `a → b → … → a` (each depends on the next), starting at
    /// its smallest id; one per group of tasks that depend on each other.
    pub(crate) cycles: Vec<Vec<String>>,
    /// The members of each cycle's group (sorted), parallel to `cycles`.
    pub(crate) cycle_members: Vec<Vec<String>>,
    /// Tasks that cannot be ordered because they are in a cycle or depend on one (sorted).
    pub(crate) unordered: Vec<String>,
}

/// The longest chain of ordered tasks by estimated hours.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CriticalPath {
    pub(crate) tasks: Vec<String>,
    pub(crate) hours: f64,
}

impl<'a> TaskGraph<'a> {
    pub(crate) fn new(tasks: &'a [SpecTask]) -> Self {
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut nodes = Vec::new();
        let mut duplicates = Vec::new();
        let mut repeated: HashSet<&str> = HashSet::new();
        for task in tasks {
            if index.contains_key(task.id.as_str()) {
                if repeated.insert(task.id.as_str()) {
                    duplicates.push(task.id.clone());
                }
            } else {
                index.insert(task.id.as_str(), nodes.len());
                nodes.push(task);
            }
        }
        let mut unknown = Vec::new();
        let mut self_dependent = Vec::new();
        let mut deps = Vec::with_capacity(nodes.len());
        // `added[d] == node` when `d` is already among `node`'s dependencies.
        let mut added = vec![usize::MAX; nodes.len()];
        for (node, task) in nodes.iter().enumerate() {
            let mut mine: Vec<usize> = Vec::new();
            let mut on_itself = false;
            for dep in &task.depends_on {
                match index.get(dep.as_str()) {
                    Some(&d) if d == node => on_itself = true,
                    Some(&d) => {
                        if added[d] != node {
                            added[d] = node;
                            mine.push(d);
                        }
                    }
                    None => unknown.push((task.id.clone(), dep.clone())),
                }
            }
            if on_itself {
                self_dependent.push(task.id.clone());
            }
            deps.push(mine);
        }
        TaskGraph {
            nodes,
            deps,
            duplicates,
            unknown,
            self_dependent,
        }
    }

    fn id(&self, node: usize) -> &'a str {
        self.nodes[node].id.as_str()
    }

    /// Kahn's algorithm: the order (smallest ready id first), the waves, and the cycles that stop it.
    pub(crate) fn ordering(&self) -> Ordering {
        let n = self.nodes.len();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut waiting: Vec<usize> = vec![0; n];
        for (node, deps) in self.deps.iter().enumerate() {
            waiting[node] = deps.len();
            for &d in deps {
                dependents[d].push(node);
            }
        }

        let mut remaining = waiting.clone();
        let mut ready: BTreeSet<(Id<'_>, usize)> = (0..n)
            .filter(|&v| remaining[v] == 0)
            .map(|v| (Id(self.id(v)), v))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(first) = ready.pop_first() {
            let (_, v) = first;
            order.push(self.id(v).to_string());
            for &w in &dependents[v] {
                remaining[w] -= 1;
                if remaining[w] == 0 {
                    ready.insert((Id(self.id(w)), w));
                }
            }
        }

        let mut waves = Vec::new();
        let mut remaining = waiting;
        let mut wave: Vec<usize> = (0..n).filter(|&v| remaining[v] == 0).collect();
        let mut ordered = vec![false; n];
        while !wave.is_empty() {
            let mut next = Vec::new();
            for &v in &wave {
                ordered[v] = true;
                for &w in &dependents[v] {
                    remaining[w] -= 1;
                    if remaining[w] == 0 {
                        next.push(w);
                    }
                }
            }
            let mut ids: Vec<String> = wave.iter().map(|&v| self.id(v).to_string()).collect();
            ids::sort(&mut ids);
            waves.push(ids);
            wave = next;
        }

        let stuck: Vec<usize> = (0..n).filter(|&v| !ordered[v]).collect();
        let mut unordered: Vec<String> = stuck.iter().map(|&v| self.id(v).to_string()).collect();
        ids::sort(&mut unordered);
        let (cycles, cycle_members) = self.cycles(&stuck);
        Ordering {
            order,
            waves,
            cycles,
            cycle_members,
            unordered,
        }
    }

    /// The groups of tasks among `stuck` that depend on each other (the strongly connected
    /// components with more than one task, found by Tarjan's algorithm without recursion), each
    /// with one cycle through it. Linear in the tasks and dependencies.
    fn cycles(&self, stuck: &[usize]) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        let n = self.nodes.len();
        let mut within = vec![false; n];
        for &v in stuck {
            within[v] = true;
        }
        let mut groups = self.components(stuck, &within);
        groups.retain(|g| g.len() > 1);
        for group in &mut groups {
            group.sort_by(|&a, &b| compare(self.id(a), self.id(b)));
        }
        groups.sort_by(|a, b| match (a.first(), b.first()) {
            (Some(&x), Some(&y)) => compare(self.id(x), self.id(y)),
            _ => a.len().cmp(&b.len()),
        });
        let mut member = vec![false; n];
        groups
            .iter()
            .map(|group| {
                for &v in group {
                    member[v] = true;
                }
                let path = self.cycle_path(group, &member);
                for &v in group {
                    member[v] = false;
                }
                let members = group.iter().map(|&v| self.id(v).to_string()).collect();
                (path, members)
            })
            .unzip()
    }

    /// The strongly connected components of the subgraph of the nodes marked in `within`.
    fn components(&self, roots: &[usize], within: &[bool]) -> Vec<Vec<usize>> {
        const UNSEEN: usize = usize::MAX;
        let n = self.nodes.len();
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<usize> = Vec::new();
        // The depth-first path: a node and the position of the next dependency to look at.
        let mut path: Vec<(usize, usize)> = Vec::new();
        let mut next_index = 0;
        let mut groups = Vec::new();
        for &root in roots {
            if index[root] != UNSEEN {
                continue;
            }
            path.push((root, 0));
            index[root] = next_index;
            low[root] = next_index;
            next_index += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut at)) = path.last_mut() {
                if let Some(&d) = self.deps[v].get(*at) {
                    *at += 1;
                    if !within[d] {
                        continue;
                    }
                    if index[d] == UNSEEN {
                        index[d] = next_index;
                        low[d] = next_index;
                        next_index += 1;
                        stack.push(d);
                        on_stack[d] = true;
                        path.push((d, 0));
                    } else if on_stack[d] {
                        low[v] = low[v].min(index[d]);
                    }
                    continue;
                }
                path.pop();
                if let Some(&(parent, _)) = path.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut group = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        group.push(w);
                        if w == v {
                            break;
                        }
                    }
                    groups.push(group);
                }
            }
        }
        groups
    }

    /// One cycle inside a group (sorted by id) whose members all reach each other, marked in
    /// `member`: from the smallest id, follow the smallest dependency inside the group until a task
    /// repeats. Each step is linear in the task's dependencies, so the walk is linear overall.
    fn cycle_path(&self, group: &[usize], member: &[bool]) -> Vec<String> {
        let Some(&start) = group.first() else {
            return Vec::new();
        };
        let mut position: BTreeMap<usize, usize> = BTreeMap::new();
        let mut path = vec![start];
        position.insert(start, 0);
        let mut current = start;
        loop {
            let next = self.deps[current]
                .iter()
                .copied()
                .filter(|&d| member[d])
                .min_by(|&a, &b| compare(self.id(a), self.id(b)));
            let Some(next) = next else {
                break;
            };
            if let Some(&at) = position.get(&next) {
                let mut cycle: Vec<usize> = path[at..].to_vec();
                let smallest = (0..cycle.len())
                    .min_by(|&i, &j| compare(self.id(cycle[i]), self.id(cycle[j])))
                    .unwrap_or(0);
                cycle.rotate_left(smallest);
                let first = cycle[0];
                cycle.push(first);
                return cycle.iter().map(|&v| self.id(v).to_string()).collect();
            }
            position.insert(next, path.len());
            path.push(next);
            current = next;
        }
        path.iter().map(|&v| self.id(v).to_string()).collect()
    }

    /// The longest chain by estimated hours among the ordered tasks; a negative estimate counts as
    /// zero. Ties go to the smaller id.
    pub(crate) fn critical_path(&self, ordering: &Ordering) -> CriticalPath {
        let position: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(v, t)| (t.id.as_str(), v))
            .collect();
        let mut best: BTreeMap<usize, (f64, Option<usize>)> = BTreeMap::new();
        for id in &ordering.order {
            let Some(&v) = position.get(id.as_str()) else {
                continue;
            };
            let mut before: Option<(f64, usize)> = None;
            for &d in &self.deps[v] {
                let Some(&(hours, _)) = best.get(&d) else {
                    continue;
                };
                let better = match before {
                    None => true,
                    Some((h, u)) => {
                        hours > h || (hours == h && compare(self.id(d), self.id(u)).is_lt())
                    }
                };
                if better {
                    before = Some((hours, d));
                }
            }
            let own = hours(self.nodes[v]);
            best.insert(
                v,
                (own + before.map_or(0.0, |(h, _)| h), before.map(|(_, u)| u)),
            );
        }
        let end = best
            .iter()
            .max_by(|(a, (ha, _)), (b, (hb, _))| {
                ha.total_cmp(hb)
                    .then_with(|| compare(self.id(**b), self.id(**a)))
            })
            .map(|(&v, &(h, _))| (v, h));
        let Some((end, total)) = end else {
            return CriticalPath {
                tasks: Vec::new(),
                hours: 0.0,
            };
        };
        let mut tasks = vec![self.id(end).to_string()];
        let mut current = end;
        while let Some(&(_, Some(previous))) = best.get(&current) {
            tasks.push(self.id(previous).to_string());
            current = previous;
        }
        tasks.reverse();
        CriticalPath {
            tasks,
            hours: total,
        }
    }
}

/// A task's estimate for planning: negative or non-finite counts as zero.
pub(crate) fn hours(task: &SpecTask) -> f64 {
    if task.estimate_hours.is_finite() {
        task.estimate_hours.max(0.0)
    } else {
        0.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use omoi_protocol::artifact::{Priority, TaskKind};
    use pretty_assertions::assert_eq;

    /// A task with an id, an estimate and dependencies; the rest is filler.
    pub(crate) fn task(id: &str, hours: f64, deps: &[&str]) -> SpecTask {
        SpecTask {
            id: id.into(),
            title: format!("Task {id}"),
            description: format!("Does the work of {id}."),
            kind: TaskKind::Implementation,
            priority: Priority::Medium,
            estimate_hours: hours,
            files: vec![],
            acceptance_criteria: vec![format!("{id} is done")],
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            requirements: vec![],
        }
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn diamond_orders_in_waves_and_finds_the_heavier_branch() {
        // 1 ← 2 (5h), 1 ← 3 (1h), {2,3} ← 4
        let tasks = vec![
            task("TSK-004", 1.0, &["TSK-002", "TSK-003"]),
            task("TSK-003", 1.0, &["TSK-001"]),
            task("TSK-002", 5.0, &["TSK-001"]),
            task("TSK-001", 2.0, &[]),
        ];
        let graph = TaskGraph::new(&tasks);
        let ordering = graph.ordering();
        assert_eq!(
            ordering,
            Ordering {
                order: ids(&["TSK-001", "TSK-002", "TSK-003", "TSK-004"]),
                waves: vec![
                    ids(&["TSK-001"]),
                    ids(&["TSK-002", "TSK-003"]),
                    ids(&["TSK-004"])
                ],
                cycles: vec![],
                cycle_members: vec![],
                unordered: vec![],
            }
        );
        assert_eq!(
            graph.critical_path(&ordering),
            CriticalPath {
                tasks: ids(&["TSK-001", "TSK-002", "TSK-004"]),
                hours: 8.0
            }
        );
    }

    #[test]
    fn order_prefers_the_smallest_ready_id_not_the_wave() {
        let tasks = vec![
            task("A", 1.0, &[]),
            task("B", 1.0, &["A"]),
            task("C", 1.0, &[]),
        ];
        let ordering = TaskGraph::new(&tasks).ordering();
        assert_eq!(ordering.order, ids(&["A", "B", "C"]));
        assert_eq!(ordering.waves, vec![ids(&["A", "C"]), ids(&["B"])]);
    }

    #[test]
    fn ids_over_999_order_by_number() {
        let tasks = vec![
            task("TSK-1000", 1.0, &[]),
            task("TSK-999", 1.0, &[]),
            task("TSK-1001", 1.0, &["TSK-1000", "TSK-999"]),
            task("TSK-010", 1.0, &["TSK-1001"]),
            task("TSK-1002", 1.0, &["TSK-1003"]),
            task("TSK-1003", 1.0, &["TSK-1002"]),
            task("TSK-998", 1.0, &["TSK-1002"]),
        ];
        let ordering = TaskGraph::new(&tasks).ordering();
        assert_eq!(
            ordering.order,
            ids(&["TSK-999", "TSK-1000", "TSK-1001", "TSK-010"])
        );
        assert_eq!(ordering.waves[0], ids(&["TSK-999", "TSK-1000"]));
        assert_eq!(
            ordering.unordered,
            ids(&["TSK-998", "TSK-1002", "TSK-1003"])
        );
        assert_eq!(
            ordering.cycles,
            vec![ids(&["TSK-1002", "TSK-1003", "TSK-1002"])]
        );
    }

    #[test]
    fn a_cycle_is_named_and_what_waits_on_it_is_unordered() {
        let tasks = vec![
            task("TSK-001", 1.0, &[]),
            task("TSK-002", 1.0, &["TSK-001", "TSK-004"]),
            task("TSK-003", 1.0, &["TSK-002"]),
            task("TSK-004", 1.0, &["TSK-003"]),
            task("TSK-005", 1.0, &["TSK-003"]),
        ];
        let graph = TaskGraph::new(&tasks);
        let ordering = graph.ordering();
        assert_eq!(
            ordering,
            Ordering {
                order: ids(&["TSK-001"]),
                waves: vec![ids(&["TSK-001"])],
                cycles: vec![ids(&["TSK-002", "TSK-004", "TSK-003", "TSK-002"])],
                cycle_members: vec![ids(&["TSK-002", "TSK-003", "TSK-004"])],
                unordered: ids(&["TSK-002", "TSK-003", "TSK-004", "TSK-005"]),
            }
        );
        assert_eq!(
            graph.critical_path(&ordering),
            CriticalPath {
                tasks: ids(&["TSK-001"]),
                hours: 1.0
            }
        );
    }

    #[test]
    fn self_unknown_and_duplicate_ids_are_reported() {
        let tasks = vec![
            task("TSK-001", 1.0, &["TSK-001", "TSK-009"]),
            task("TSK-002", 1.0, &["TSK-001", "TSK-001"]),
            task("TSK-002", 3.0, &[]),
        ];
        let graph = TaskGraph::new(&tasks);
        assert_eq!(graph.self_dependent, ids(&["TSK-001"]));
        assert_eq!(
            graph.unknown,
            vec![("TSK-001".to_string(), "TSK-009".to_string())]
        );
        assert_eq!(graph.duplicates, ids(&["TSK-002"]));
        // The self-dependency is not an edge: the rest still orders.
        assert_eq!(graph.ordering().order, ids(&["TSK-001", "TSK-002"]));
    }

    #[test]
    fn two_separate_cycles_are_both_found() {
        let tasks = vec![
            task("A", 1.0, &["B"]),
            task("B", 1.0, &["A"]),
            task("C", 1.0, &["D"]),
            task("D", 1.0, &["C"]),
        ];
        let ordering = TaskGraph::new(&tasks).ordering();
        assert_eq!(
            ordering.cycles,
            vec![ids(&["A", "B", "A"]), ids(&["C", "D", "C"])]
        );
        assert_eq!(ordering.order, Vec::<String>::new());
    }

    #[test]
    fn negative_estimates_count_as_zero_on_the_critical_path() {
        let tasks = vec![task("A", -3.0, &[]), task("B", 2.0, &["A"])];
        let graph = TaskGraph::new(&tasks);
        let path = graph.critical_path(&graph.ordering());
        assert_eq!(
            path,
            CriticalPath {
                tasks: ids(&["A", "B"]),
                hours: 2.0
            }
        );
    }

    /// A small deterministic generator for the random graphs below (xorshift64*).
    pub(crate) struct Random(u64);

    impl Random {
        pub(crate) fn new(seed: u64) -> Self {
            Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
        }
    }

    /// A random graph of up to 12 tasks; `acyclic` draws dependencies only on earlier tasks.
    fn random_tasks(random: &mut Random, acyclic: bool) -> Vec<SpecTask> {
        let n = 1 + random.below(12);
        let names: Vec<String> = (0..n)
            .map(|i| format!("T{:02}", random.below(100) * 100 + i))
            .collect();
        (0..n)
            .map(|i| {
                let count = random.below(4);
                let deps: Vec<&str> = (0..count)
                    .filter_map(|_| {
                        let d = if acyclic {
                            (i > 0).then(|| random.below(i))
                        } else {
                            Some(random.below(n))
                        };
                        d.map(|d| names[d].as_str())
                    })
                    .collect();
                task(&names[i], 1.0 + random.below(5) as f64, &deps)
            })
            .collect()
    }

    /// The reference: `reach[a][b]` when `a` depends on `b` through one or more edges (self
    /// dependencies excluded), by repeated relaxation.
    fn reference_reach(tasks: &[SpecTask]) -> Vec<Vec<bool>> {
        let n = tasks.len();
        let mut reach = vec![vec![false; n]; n];
        for (a, t) in tasks.iter().enumerate() {
            for d in &t.depends_on {
                if let Some(b) = tasks.iter().position(|u| &u.id == d) {
                    if a != b {
                        reach[a][b] = true;
                    }
                }
            }
        }
        for k in 0..n {
            for a in 0..n {
                if reach[a][k] {
                    let through = reach[k].clone();
                    for (b, reached) in through.into_iter().enumerate() {
                        reach[a][b] |= reached;
                    }
                }
            }
        }
        reach
    }

    #[test]
    fn random_graphs_agree_with_a_simple_reference() {
        let mut random = Random::new(7);
        for round in 0..2000 {
            let tasks = random_tasks(&mut random, round % 2 == 0);
            let graph = TaskGraph::new(&tasks);
            let ordering = graph.ordering();
            let reach = reference_reach(&tasks);
            let n = tasks.len();
            let id = |v: usize| tasks[v].id.clone();
            let cyclic: BTreeSet<usize> = (0..n).filter(|&v| reach[v][v]).collect();
            let mut unordered: Vec<String> = (0..n)
                .filter(|&v| cyclic.contains(&v) || cyclic.iter().any(|&c| reach[v][c]))
                .map(id)
                .collect();
            ids::sort(&mut unordered);
            assert_eq!(ordering.unordered, unordered, "{tasks:?}");
            if round % 2 == 0 {
                assert!(ordering.cycles.is_empty(), "{tasks:?}");
            }
            // The groups are the classes of mutual reachability, sorted by their smallest id.
            let mut groups: Vec<Vec<String>> = Vec::new();
            for &v in &cyclic {
                let mut group: Vec<String> = cyclic
                    .iter()
                    .filter(|&&u| u == v || (reach[v][u] && reach[u][v]))
                    .map(|&u| id(u))
                    .collect();
                ids::sort(&mut group);
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
            groups.sort_by(|a, b| compare(&a[0], &b[0]));
            assert_eq!(ordering.cycle_members, groups, "{tasks:?}");
            // Each cycle is a real one inside its group.
            for (cycle, members) in ordering.cycles.iter().zip(&ordering.cycle_members) {
                assert_eq!(cycle.first(), cycle.last());
                assert_eq!(
                    cycle.first(),
                    cycle.iter().min_by(|a, b| compare(a, b)),
                    "starts at its smallest id"
                );
                for pair in cycle.windows(2) {
                    let task = tasks.iter().find(|t| t.id == pair[0]).unwrap();
                    assert!(task.depends_on.contains(&pair[1]), "{cycle:?} in {tasks:?}");
                    assert!(members.contains(&pair[1]));
                }
            }
            // The order holds every other task once, each after its dependencies.
            let mut ordered: Vec<String> = ordering.order.clone();
            ids::sort(&mut ordered);
            let expected: Vec<String> = {
                let mut all: Vec<String> =
                    (0..n).map(id).filter(|i| !unordered.contains(i)).collect();
                ids::sort(&mut all);
                all
            };
            assert_eq!(ordered, expected, "{tasks:?}");
            for (at, name) in ordering.order.iter().enumerate() {
                let task = tasks.iter().find(|t| &t.id == name).unwrap();
                for d in task.depends_on.iter().filter(|d| *d != name) {
                    let before = ordering.order[..at].contains(d);
                    assert!(
                        before,
                        "{name} before its dependency {d}: {:?}",
                        ordering.order
                    );
                }
            }
        }
    }

    #[test]
    fn one_long_cycle_and_one_long_chain_are_handled_in_linear_time() {
        let n = 200_000;
        let name = |i: usize| format!("TSK-{i:06}");
        let cycle: Vec<SpecTask> = (0..n)
            .map(|i| task(&name(i), 1.0, &[&name((i + 1) % n)]))
            .collect();
        let ordering = TaskGraph::new(&cycle).ordering();
        assert_eq!(ordering.cycles.len(), 1);
        assert_eq!(ordering.cycles[0].len(), n + 1);
        assert_eq!(ordering.unordered.len(), n);
        let chain: Vec<SpecTask> = (0..n)
            .map(|i| {
                let deps: Vec<String> = (i > 0).then(|| name(i - 1)).into_iter().collect();
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                task(&name(i), 1.0, &deps)
            })
            .collect();
        let graph = TaskGraph::new(&chain);
        let ordering = graph.ordering();
        assert_eq!(ordering.order.len(), n);
        assert_eq!(ordering.waves.len(), n);
        assert_eq!(graph.critical_path(&ordering).hours, n as f64);
    }
}
