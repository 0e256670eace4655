//! Property tests: the recorded history is exactly what ran, and the caps
//! hold for any program of nested operations and steps.

mod support;

use foundation_trace::{LimitsConfig, TraceConfig};
use proptest::prelude::*;
use support::{dispatch, with};

#[derive(Debug, Clone)]
enum Action {
    Enter(u8),
    Event(u8),
    Exit,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (0u8..4).prop_map(Action::Enter),
        (0u8..4).prop_map(Action::Event),
        Just(Action::Exit),
    ]
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// Runs `program` under a root span; returns the expected outline and the
/// number of operations and steps it performed.
fn run(program: &[Action]) -> (Vec<String>, usize, usize) {
    let mut expected = vec!["root".to_owned()];
    let mut stack: Vec<tracing::span::EnteredSpan> = Vec::new();
    let _root = tracing::info_span!("root", correlation_id = "p").entered();
    let (mut ops, mut steps) = (1, 0);
    for a in program {
        let depth = stack.len() + 1;
        match a {
            Action::Enter(n) => {
                let name = NAMES[usize::from(*n)];
                expected.push(format!("{}{name}", "  ".repeat(depth)));
                stack.push(tracing::info_span!("op", otel.name = name).entered());
                ops += 1;
            }
            Action::Event(i) => {
                expected.push(format!("{}- ev{i}", "  ".repeat(depth)));
                tracing::info!(i = u64::from(*i), "ev{}", i);
                steps += 1;
            }
            Action::Exit => {
                stack.pop();
            }
        }
    }
    while stack.pop().is_some() {}
    (expected, ops, steps)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn history_is_what_ran_in_order(program in prop::collection::vec(action(), 0..60)) {
        let (d, h) = dispatch(TraceConfig::default());
        let (expected, ops, steps) = with(&d, || run(&program));
        let t = h.store().find("p").unwrap();
        prop_assert_eq!(t.outline(), expected);
        prop_assert_eq!(t.operations.len(), ops);
        prop_assert_eq!(t.steps.len(), steps);
        // Sequence numbers and timestamps never go backwards.
        prop_assert!(t.steps.windows(2).all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
        prop_assert!(t.operations.iter().all(|o| o.end.is_some() && o.duration().is_some()));
    }

    #[test]
    fn caps_hold_and_count_what_they_cut(
        program in prop::collection::vec(action(), 0..80),
        max_steps in 1usize..10,
        max_operations in 1usize..10,
    ) {
        let config = TraceConfig::default().with_limits(LimitsConfig {
            max_steps,
            max_operations,
            ..LimitsConfig::default()
        });
        let (d, h) = dispatch(config);
        let (_, ops, steps) = with(&d, || run(&program));
        let t = h.store().find("p").unwrap();
        prop_assert_eq!(t.steps.len(), steps.min(max_steps));
        prop_assert_eq!(t.steps.len() as u64 + t.dropped.steps, steps as u64);
        prop_assert_eq!(t.operations.len(), ops.min(max_operations));
        prop_assert_eq!(t.operations.len() as u64 + t.dropped.operations, ops as u64);
    }
}
