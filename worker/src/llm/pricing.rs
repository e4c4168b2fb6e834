//! Estimated cost of a model call from its token counts: list prices per model family, matched
//! by the longest known prefix of the model name, or a price the configuration gives.

use super::TokenUsage;

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Price {
    /// The price of models that cost nothing to call (local servers, the script).
    pub const FREE: Price = Price::new(0.0, 0.0);

    pub const fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Price {
            input_per_mtok,
            output_per_mtok,
        }
    }
}

/// List prices (USD per million input / output tokens, standard tier, no caching) by model-name
/// prefix. The longest matching prefix wins, so `gpt-4o-mini` is not priced as `gpt-4o`, and a
/// dated snapshot (`claude-sonnet-4-5-20250929`) is priced as its family.
const PRICES: &[(&str, Price)] = &[
    // Anthropic
    ("claude-opus-4-6", Price::new(5.0, 25.0)),
    ("claude-opus-4-5", Price::new(5.0, 25.0)),
    ("claude-opus-4", Price::new(15.0, 75.0)),
    ("claude-sonnet-4", Price::new(3.0, 15.0)),
    ("claude-haiku-4", Price::new(1.0, 5.0)),
    ("claude-3-opus", Price::new(15.0, 75.0)),
    ("claude-3-7-sonnet", Price::new(3.0, 15.0)),
    ("claude-3-5-sonnet", Price::new(3.0, 15.0)),
    ("claude-3-5-haiku", Price::new(0.8, 4.0)),
    ("claude-3-haiku", Price::new(0.25, 1.25)),
    // OpenAI
    ("gpt-5-nano", Price::new(0.05, 0.4)),
    ("gpt-5-mini", Price::new(0.25, 2.0)),
    ("gpt-5", Price::new(1.25, 10.0)),
    ("gpt-4.1-nano", Price::new(0.1, 0.4)),
    ("gpt-4.1-mini", Price::new(0.4, 1.6)),
    ("gpt-4.1", Price::new(2.0, 8.0)),
    ("gpt-4o-mini", Price::new(0.15, 0.6)),
    ("gpt-4o", Price::new(2.5, 10.0)),
    ("gpt-4-turbo", Price::new(10.0, 30.0)),
    ("o4-mini", Price::new(1.1, 4.4)),
    ("o3-mini", Price::new(1.1, 4.4)),
    ("o3", Price::new(2.0, 8.0)),
    ("o1-mini", Price::new(1.1, 4.4)),
    ("o1", Price::new(15.0, 60.0)),
];

/// The estimated cost in US dollars of `usage` at `price`.
pub fn cost(price: Price, usage: TokenUsage) -> f64 {
    let plain = usage
        .input_tokens
        .saturating_sub(usage.cache_read_tokens + usage.cache_write_tokens);
    let input = plain as f64
        + usage.cache_read_tokens as f64 * CACHE_READ_FACTOR
        + usage.cache_write_tokens as f64 * CACHE_WRITE_FACTOR;
    (input * price.input_per_mtok + usage.output_tokens as f64 * price.output_per_mtok)
        / 1_000_000.0
}

/// Cache reads cost a tenth of the input price, cache writes a quarter more (Anthropic's list
/// terms for its 5-minute cache).
pub const CACHE_READ_FACTOR: f64 = 0.1;
pub const CACHE_WRITE_FACTOR: f64 = 1.25;

/// The list price of `model`: zero for models without a known price (local servers, the script).
/// A routing prefix such as `anthropic/` or `openai/` is ignored, and case does not matter.
pub fn price_of(model: &str) -> Price {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .trim()
        .to_ascii_lowercase();
    PRICES
        .iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, price)| *price)
        .unwrap_or(Price::FREE)
}

/// The context window of `model` in tokens: what one request (its whole prompt) may hold.
/// Unknown models get 128,000, the smallest window of the current API models.
pub fn context_window(model: &str) -> u64 {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .trim()
        .to_ascii_lowercase();
    const WINDOWS: &[(&str, u64)] = &[
        ("claude-", 200_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-5", 400_000),
        ("o3", 200_000),
        ("o4", 200_000),
        ("gpt-4o", 128_000),
    ];
    WINDOWS
        .iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(128_000, |(_, window)| *window)
}

/// The price to count for `model`: the configured override when there is one (from
/// `OMOI_PRICE_INPUT_PER_MTOK` / `OMOI_PRICE_OUTPUT_PER_MTOK`), else the list price.
pub fn price_for(model: &str, override_: Option<Price>) -> Price {
    override_.unwrap_or_else(|| price_of(model))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn knows_the_window_of_each_model_family() {
        assert_eq!(context_window("claude-sonnet-4-5"), 200_000);
        assert_eq!(context_window("anthropic/Claude-Opus-4-5"), 200_000);
        assert_eq!(context_window("gpt-4.1-mini"), 1_047_576);
        assert_eq!(context_window("gpt-5-codex"), 400_000);
        assert_eq!(context_window("gpt-4o-mini"), 128_000);
        assert_eq!(context_window("o3"), 200_000);
        assert_eq!(context_window("llama3:70b"), 128_000);
        assert_eq!(context_window(""), 128_000);
    }

    #[test]
    fn matches_the_longest_prefix() {
        let cases = [
            ("claude-sonnet-4-5-20250929", Price::new(3.0, 15.0)),
            ("claude-sonnet-4-20250514", Price::new(3.0, 15.0)),
            ("claude-opus-4-1-20250805", Price::new(15.0, 75.0)),
            ("claude-opus-4-5-20251101", Price::new(5.0, 25.0)),
            ("claude-haiku-4-5", Price::new(1.0, 5.0)),
            ("claude-3-5-haiku-latest", Price::new(0.8, 4.0)),
            ("gpt-4o-mini-2024-07-18", Price::new(0.15, 0.6)),
            ("gpt-4o-2024-08-06", Price::new(2.5, 10.0)),
            ("gpt-4.1-mini", Price::new(0.4, 1.6)),
            ("gpt-5-mini", Price::new(0.25, 2.0)),
            ("gpt-5", Price::new(1.25, 10.0)),
            ("o3-mini", Price::new(1.1, 4.4)),
            ("o3", Price::new(2.0, 8.0)),
            ("openai/GPT-4o", Price::new(2.5, 10.0)),
            ("anthropic/claude-sonnet-4-5", Price::new(3.0, 15.0)),
            ("llama3.1:8b", Price::FREE),
            ("qwen2.5-coder", Price::FREE),
            ("", Price::FREE),
        ];
        for (model, expected) in cases {
            assert_eq!(price_of(model), expected, "{model}");
        }
    }

    #[test]
    fn an_override_wins_over_the_list() {
        let custom = Price::new(0.5, 1.5);
        assert_eq!(price_for("claude-sonnet-4-5", Some(custom)), custom);
        assert_eq!(price_for("llama3", Some(custom)), custom);
        assert_eq!(price_for("claude-sonnet-4-5", None), Price::new(3.0, 15.0));
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let usage = TokenUsage {
            input_tokens: 2_000_000,
            output_tokens: 100_000,
            ..TokenUsage::default()
        };
        assert_eq!(cost(Price::new(3.0, 15.0), usage), 7.5);
        assert_eq!(cost(Price::FREE, usage), 0.0);
    }

    #[test]
    fn cached_input_is_priced_at_the_cache_terms() {
        // 1M plain, 1M written, 8M read: 1 + 1.25 + 0.8 = 3.05 M input-price units.
        let usage = TokenUsage {
            input_tokens: 10_000_000,
            output_tokens: 0,
            cache_read_tokens: 8_000_000,
            cache_write_tokens: 1_000_000,
        };
        let cost = cost(Price::new(3.0, 15.0), usage);
        assert!((cost - 9.15).abs() < 1e-9, "{cost}");
    }
}
