//! What the fake model counts of a prompt: its size in tokens (estimated as the API's
//! tokenizer roughly does, a token per 4 bytes of the JSON), the context window it must fit,
//! and a prompt cache that works as Anthropic's does — a prefix ending at a `cache_control`
//! breakpoint is written to the cache (when at least [`MIN_CACHEABLE`] tokens long), and a
//! later prompt that starts with a cached prefix reads it from the cache, found at a block
//! boundary up to [`LOOKBACK`] blocks before one of its breakpoints.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The smallest prefix the cache keeps (Anthropic's minimum for its Sonnet and Opus models).
pub const MIN_CACHEABLE: u64 = 1024;
/// How many blocks before a breakpoint the cache looks for a hit.
pub const LOOKBACK: usize = 20;
/// Anthropic's context window for its current models.
pub const DEFAULT_WINDOW: u64 = 200_000;

/// One block of a prompt in the order the API reads it (tools, system, messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Its JSON text, as sent.
    pub text: String,
    /// A `cache_control` breakpoint ends the prefix at this block.
    pub breakpoint: bool,
}

/// How one prompt's input tokens divide, as the API reports them in `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptUsage {
    /// Tokens neither read from nor written to the cache.
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl PromptUsage {
    /// Every input token of the prompt.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }

    /// The input billed in units of the plain input price: cache writes at 1.25×, reads at 0.1×.
    pub fn billed(&self) -> f64 {
        self.input_tokens as f64
            + 1.25 * self.cache_creation_input_tokens as f64
            + 0.1 * self.cache_read_input_tokens as f64
    }
}

/// The estimated tokens of a piece of JSON text.
pub fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The cache of one fake server: the hashes of the cached prefixes.
#[derive(Debug, Default)]
pub struct PromptCache {
    prefixes: HashSet<u64>,
}

impl PromptCache {
    /// Counts `pieces` against the cache, then caches the prefixes at its breakpoints.
    pub fn account(&mut self, pieces: &[Piece]) -> PromptUsage {
        let mut cumulative = Vec::with_capacity(pieces.len());
        let mut hashes = Vec::with_capacity(pieces.len());
        let (mut sum, mut hasher) = (0u64, DefaultHasher::new());
        for piece in pieces {
            sum += tokens(&piece.text);
            piece.text.hash(&mut hasher);
            cumulative.push(sum);
            hashes.push(hasher.finish());
        }
        let breakpoints: Vec<usize> = (0..pieces.len())
            .filter(|&i| pieces[i].breakpoint)
            .collect();
        // The longest cached prefix that ends at a block boundary near a breakpoint.
        let mut read = 0;
        for &at in &breakpoints {
            for j in at.saturating_sub(LOOKBACK)..=at {
                if self.prefixes.contains(&hashes[j]) {
                    read = read.max(cumulative[j]);
                }
            }
        }
        let written_to = breakpoints
            .last()
            .map(|&last| cumulative[last])
            .filter(|&end| end >= MIN_CACHEABLE && end > read)
            .unwrap_or(read);
        for &at in &breakpoints {
            if cumulative[at] >= MIN_CACHEABLE {
                self.prefixes.insert(hashes[at]);
            }
        }
        PromptUsage {
            input_tokens: sum - written_to,
            cache_creation_input_tokens: written_to - read,
            cache_read_input_tokens: read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(bytes: usize, breakpoint: bool, fill: char) -> Piece {
        Piece {
            text: fill.to_string().repeat(bytes),
            breakpoint,
        }
    }

    #[test]
    fn a_growing_conversation_reads_its_earlier_prefix_from_the_cache() {
        let mut cache = PromptCache::default();
        // Tools and system (8,000 bytes: 2,000 tokens), a first message of 400 tokens.
        let system = piece(8000, true, 's');
        let first = piece(1600, true, 'a');
        let usage = cache.account(&[system.clone(), first.clone()]);
        assert_eq!(
            usage,
            PromptUsage {
                input_tokens: 0,
                cache_creation_input_tokens: 2400,
                cache_read_input_tokens: 0,
            }
        );
        // The next turn: the breakpoint moves to the new last block; the old prefix is read.
        let answer = piece(400, false, 'b');
        let result = piece(2000, true, 'c');
        let usage = cache.account(&[system.clone(), first.clone(), answer, result]);
        assert_eq!(
            usage,
            PromptUsage {
                input_tokens: 0,
                cache_creation_input_tokens: 600,
                cache_read_input_tokens: 2400,
            }
        );
        assert_eq!(usage.total(), 3000);
        // Another prompt with a changed first message reads only the system prefix.
        let other = piece(1600, true, 'x');
        let usage = cache.account(&[system, other]);
        assert_eq!(usage.cache_read_input_tokens, 2000);
        assert_eq!(usage.cache_creation_input_tokens, 400);
    }

    #[test]
    fn short_prefixes_and_prompts_without_breakpoints_are_not_cached() {
        let mut cache = PromptCache::default();
        let small = [piece(400, true, 's'), piece(40, false, 'a')];
        for _ in 0..2 {
            assert_eq!(
                cache.account(&small),
                PromptUsage {
                    input_tokens: 110,
                    ..PromptUsage::default()
                }
            );
        }
        let plain = [piece(8000, false, 's')];
        for _ in 0..2 {
            assert_eq!(cache.account(&plain).input_tokens, 2000);
        }
        assert_eq!(cache.account(&[]), PromptUsage::default());
    }

    #[test]
    fn billing_prices_writes_above_and_reads_far_below_plain_input() {
        let usage = PromptUsage {
            input_tokens: 100,
            cache_creation_input_tokens: 1000,
            cache_read_input_tokens: 10_000,
        };
        assert_eq!(usage.billed(), 100.0 + 1250.0 + 1000.0);
    }
}
