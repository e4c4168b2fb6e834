//! Task ids: what a well-formed one is (`TSK-001` … `TSK-999999`), and the order ids sort in, which
//! puts numbers in numeric order (`TSK-999` before `TSK-1000`, `T2` before `T10`).

use std::cmp::Ordering;

/// The most digits a task number may have: up to 999,999 tasks in one spec.
pub const MAX_TASK_DIGITS: usize = 6;

/// `TSK-<N>`: at least three digits, zero-padded to three (`TSK-007`), at most
/// [`MAX_TASK_DIGITS`]; a number of four digits or more has no leading zero, so each task number
/// has one spelling (`TSK-1000`, never `TSK-01000`).
pub fn is_task_id(id: &str) -> bool {
    id.strip_prefix("TSK-").is_some_and(|n| {
        (3..=MAX_TASK_DIGITS).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n.len() == 3 || !n.starts_with('0'))
    })
}

/// Compares two ids with their runs of ASCII digits read as numbers (leading zeros aside), the
/// rest byte by byte; ids that compare equal so are ordered by their bytes, so the order is total
/// and two different ids never compare equal. Linear in the ids' length.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let (start_x, start_y) = (i, j);
            while i < x.len() && x[i].is_ascii_digit() {
                i += 1;
            }
            while j < y.len() && y[j].is_ascii_digit() {
                j += 1;
            }
            let digits_x = strip_zeros(&x[start_x..i]);
            let digits_y = strip_zeros(&y[start_y..j]);
            let by_number = digits_x
                .len()
                .cmp(&digits_y.len())
                .then_with(|| digits_x.cmp(digits_y));
            if by_number != Ordering::Equal {
                return by_number;
            }
        } else {
            if x[i] != y[j] {
                return x[i].cmp(&y[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| a.cmp(b))
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&d| d == b'0').count();
    &digits[zeros..]
}

/// An id that sorts by [`compare`], for ordered sets and maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Id<'a>(pub(crate) &'a str);

impl Ord for Id<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.0, other.0)
    }
}

impl PartialOrd for Id<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Sorts ids by [`compare`].
pub(crate) fn sort(ids: &mut [String]) {
    ids.sort_by(|a, b| compare(a, b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn task_ids_take_three_to_six_digits_with_one_spelling_each() {
        for good in [
            "TSK-000",
            "TSK-001",
            "TSK-007",
            "TSK-999",
            "TSK-1000",
            "TSK-12345",
            "TSK-99999",
            "TSK-100000",
            "TSK-999999",
        ] {
            assert!(is_task_id(good), "{good}");
        }
        for bad in [
            "TSK-7",
            "TSK-07",
            "TSK-0007",
            "TSK-01000",
            "TSK-000001",
            "TSK-1000000",
            "tsk-007",
            "TASK-007",
            "TSK-00a",
            "TSK-",
            "TSK--001",
            "TSK-+12",
            "TSK-1 000",
            "TSK-١٢٣",
            " TSK-001",
            "TSK-001 ",
            "",
        ] {
            assert!(!is_task_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn numbers_sort_by_value_and_the_order_is_total() {
        let mut ids: Vec<String> = [
            "TSK-1000",
            "TSK-999",
            "TSK-010",
            "TSK-002",
            "TSK-99999",
            "TSK-100000",
            "T10",
            "T2",
            "T02",
            "A",
            "",
            "TSK-",
            "TSK-0010",
            "b1",
            "B1",
        ]
        .map(String::from)
        .to_vec();
        sort(&mut ids);
        assert_eq!(
            ids,
            [
                "",
                "A",
                "B1",
                "T02",
                "T2",
                "T10",
                "TSK-",
                "TSK-002",
                "TSK-0010",
                "TSK-010",
                "TSK-999",
                "TSK-1000",
                "TSK-99999",
                "TSK-100000",
                "b1"
            ]
        );
        assert_eq!(compare("TSK-010", "TSK-010"), Ordering::Equal);
        assert_eq!(compare("TSK-0010", "TSK-010"), Ordering::Less);
        // A long run of digits compares without overflow.
        let long = format!("T{}", "9".repeat(200));
        assert_eq!(compare(&long, "T1"), Ordering::Greater);
    }
}
