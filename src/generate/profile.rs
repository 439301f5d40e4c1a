//! What the generated events *are* (SPEC §6): which user, which product,
//! which event type, when, and in which session.
//!
//! This module owns the [`Profile`] choice, the pure product catalogue
//! ([`category_of`], [`price_cents_of`]), per-user state (purchase propensity,
//! sessions) and the event-time model, all behind `Traffic::draft`, plus the
//! spelling of event times and numbers (`TsFormat`, `push_u64`). How a drawn
//! event becomes a line (and how lines are broken or repeated) is `mod.rs`'s
//! business.
//!
//! - `uniform`: every product equally popular, every product the same funnel
//!   (about 80 % view / 15 % add_to_cart / 5 % purchase).
//! - `skewed`: Zipf popularity (exponent 1.1) over the ordinary products, plus
//!   `hot_products` flash-sale candidates `p0..p{hot-1}` that each take 2 % of
//!   all events (at most 40 % together) and almost never convert, so the
//!   flash-sale rule (views > 100, purchases < 5 in 10 min) fires for them,
//!   while the top Zipf products (`p{hot}`, ...) have many views *and*
//!   purchases.
//!
//! In both profiles users are either window shoppers (never purchase) or
//! buyers with a Beta-distributed purchase propensity, so the batch layer sees
//! both segments in substantial numbers.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Zipf};

use super::{GenerateConfig, GenerateError, MAX_IDS, MAX_TIME_MS};

/// The shape of generated traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Profile {
    Uniform,
    /// The default: it is the one that makes the demo raise flash-sale alerts.
    #[default]
    Skewed,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self == Profile::Uniform { "uniform" } else { "skewed" })
    }
}

impl FromStr for Profile {
    type Err = GenerateError;

    fn from_str(s: &str) -> Result<Profile, GenerateError> {
        match s {
            "uniform" => Ok(Profile::Uniform),
            "skewed" => Ok(Profile::Skewed),
            other => Err(GenerateError::UnknownProfile(other.to_owned())),
        }
    }
}

/// Product categories. A product's category never changes, so the speed
/// layer's "most recent category" and the batch layer agree.
pub const CATEGORIES: [&str; 8] = ["electronics", "fashion", "home", "books", "sports", "beauty", "toys", "grocery"];

/// Whole-dollar price range per category, same order as [`CATEGORIES`].
const PRICE_RANGE: [(u32, u32); 8] = [(49, 1499), (9, 199), (9, 499), (5, 60), (9, 299), (4, 99), (5, 149), (1, 30)];

/// SplitMix64 finalizer: a fixed, seed-independent hash, so catalogue facts
/// (category, price) are the same in every run and every seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn category_index(product: u32) -> usize {
    (mix(u64::from(product)) % CATEGORIES.len() as u64) as usize
}

/// The category of product `p<product>`: a pure function of the product.
pub fn category_of(product: u32) -> &'static str {
    CATEGORIES[category_index(product)]
}

/// The unit price of product `p<product>` in cents: a pure function of the
/// product, within a range plausible for its category, ending in .99/.49/.95/.00.
pub fn price_cents_of(product: u32) -> u32 {
    let (lo, hi) = PRICE_RANGE[category_index(product)];
    let h = mix(u64::from(product) ^ 0x5052_4943_4500_0000);
    let dollars = lo + (h % u64::from(hi - lo)) as u32;
    let cents = [99, 49, 95, 0][((h >> 40) & 3) as usize];
    dollars * 100 + cents
}

/// The type of a generated event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    View,
    Cart,
    Purchase,
    /// An event type the pipeline does not count ("wishlist"): valid, `other`.
    Wishlist,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Cart => "add_to_cart",
            Kind::Purchase => "purchase",
            Kind::Wishlist => "wishlist",
        }
    }
}

/// Probability of an unknown ("wishlist") event type, in every profile.
const WISHLIST: f64 = 0.002;
/// (add_to_cart, purchase) probabilities of an ordinary product, before the
/// user's purchase propensity is applied (its mean is 1, so these are averages).
const FUNNEL: (f64, f64) = (0.15, 0.05);
/// A hot product: browsed a lot, hardly bought. Even the keenest buyer
/// (propensity 4.4) purchases it with probability 1.3 %, so well under 1 %
/// of its events are purchases.
const HOT_FUNNEL: (f64, f64) = (0.02, 0.003);
/// Share of all events each hot product receives, and the cap on their total.
const HOT_SHARE_EACH: f64 = 0.02;
const HOT_SHARE_MAX: f64 = 0.4;
const ZIPF_EXPONENT: f64 = 1.1;
/// Share of users who ever buy; the rest are window shoppers by construction.
const BUYER_SHARE: f64 = 0.45;

/// Per-user generator state: purchase propensity and the current session.
#[derive(Clone, Copy, Debug)]
struct UserState {
    /// Multiplier on the purchase probability; 0 for window shoppers.
    propensity: f32,
    /// Session counter; the session id is `s<user>-<session>`.
    session: u32,
    /// Base (un-jittered) time of the user's previous event, micros.
    last_us: i64,
}

/// The traffic model: picks products and event types.
struct Model {
    profile: Profile,
    products: u32,
    hot: u32,
    hot_share: f64,
    /// Popularity of the ordinary (non-hot) products, skewed profile only.
    zipf: Option<Zipf<f64>>,
}

impl Model {
    /// `products` ≥ 1 and `hot` < `products` (the caller clamps).
    fn new(profile: Profile, products: u32, hot: u32) -> Model {
        let hot = if profile == Profile::Skewed { hot } else { 0 };
        let ordinary = products - hot;
        let zipf = match profile {
            // n ≥ 1 and s = 1.1 > 0 are exactly Zipf::new's preconditions, so
            // this cannot fail; `.ok()` keeps it panic-free regardless.
            Profile::Skewed => Zipf::new(f64::from(ordinary), ZIPF_EXPONENT).ok(),
            Profile::Uniform => None,
        };
        Model { profile, products, hot, hot_share: (HOT_SHARE_EACH * f64::from(hot)).min(HOT_SHARE_MAX), zipf }
    }

    fn is_hot(&self, product: u32) -> bool {
        product < self.hot
    }

    fn pick_product(&self, rng: &mut ChaCha8Rng) -> u32 {
        match (self.profile, &self.zipf) {
            (Profile::Skewed, Some(zipf)) => {
                if self.hot > 0 && rng.random::<f64>() < self.hot_share {
                    return below(rng, self.hot);
                }
                // Zipf yields a rank in [1, n]; rank 1 is the most popular
                // ordinary product, p{hot}. The clamp guards float edge cases.
                let rank = zipf.sample(rng) as u32;
                self.hot + rank.clamp(1, self.products - self.hot) - 1
            }
            _ => below(rng, self.products),
        }
    }

    /// The event type of one event by a user with `propensity` on `product`.
    fn pick_kind(&self, product: u32, propensity: f32, rng: &mut ChaCha8Rng) -> Kind {
        let (cart, purchase) = if self.is_hot(product) { HOT_FUNNEL } else { FUNNEL };
        let purchase = purchase * f64::from(propensity);
        let u: f64 = rng.random();
        if u < WISHLIST {
            Kind::Wishlist
        } else if u < WISHLIST + purchase {
            Kind::Purchase
        } else if u < WISHLIST + purchase + cart {
            Kind::Cart
        } else {
            Kind::View
        }
    }
}

/// The initial state of every user. Uses its own RNG stream so the user table
/// does not shift the event stream when `users` changes.
fn init_users(seed: u64, users: u32) -> Vec<UserState> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ 0x5553_4552_5300_0000));
    // Beta(2, 2) is a fixed valid parameterisation (both > 0): cannot fail.
    let beta = Beta::new(2.0f64, 2.0).ok();
    (0..users)
        .map(|_| {
            let propensity = match &beta {
                // Mean of Beta(2,2) is 1/2, so the mean over all users is
                // BUYER_SHARE * (1/2) * 2 / BUYER_SHARE = 1.
                Some(b) if rng.random::<f64>() < BUYER_SHARE => (b.sample(&mut rng) * 2.0 / BUYER_SHARE) as f32,
                _ => 0.0,
            };
            UserState { propensity, session: 0, last_us: i64::MIN / 2 }
        })
        .collect()
}

/// Uniform in `0..n` (n ≥ 1) by multiply-shift: unbiased enough for
/// n ≪ 2^32 and cheaper than rejection sampling on the hot path.
pub(super) fn below(rng: &mut ChaCha8Rng, n: u32) -> u32 {
    ((u64::from(rng.next_u32()) * u64::from(n)) >> 32) as u32
}

/// A user's session ends after this much inactivity (base time).
const SESSION_GAP_US: i64 = 30 * 60 * 1_000_000;
/// Late events are moved back by 15 to 60 minutes: more than L + D, so every
/// window they belong to has closed in a dense stream.
const LATE_US: (i64, i64) = (15 * 60 * 1_000_000, 60 * 60 * 1_000_000);

/// The timestamp spellings SPEC §2 accepts, in the mix the generator uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TsForm {
    /// Python `isoformat()`: `2026-11-24T10:00:00.123456+00:00`, without the
    /// fraction when the microseconds are 0, as Python does (~93 %).
    Python,
    /// `2026-11-24T10:00:00.123Z` (~5 %).
    ZuluMillis,
    /// Epoch milliseconds as a JSON integer (~2 %).
    EpochMillis,
}

/// One drawn event, before it is written.
pub(super) struct Draft {
    pub(super) user: u32,
    pub(super) product: u32,
    pub(super) kind: Kind,
    pub(super) time_us: i64,
    /// Moved back 15–60 minutes.
    pub(super) late: bool,
    pub(super) form: TsForm,
    /// False for ~1 % of events, which omit `category`.
    pub(super) category: bool,
    /// The user's session number; None for ~0.5 % of events.
    pub(super) session: Option<u32>,
    /// Written on purchases only.
    pub(super) quantity: u32,
    /// Which unknown field to add, for ~0.5 % of events.
    pub(super) extra: Option<usize>,
}

/// Draws events. Owns the generator's one event RNG (`mod.rs` draws its
/// line-level decisions from it too, so there is a single, ordered stream).
pub(super) struct Traffic {
    pub(super) rng: ChaCha8Rng,
    model: Model,
    users: Vec<UserState>,
    events: u64,
    start_us: i64,
    span_us: i64,
    jitter_us: i64,
    late_share: f64,
    realtime: bool,
}

impl Traffic {
    /// `cfg` should be valid; out-of-range values are clamped so this never panics.
    pub(super) fn new(cfg: &GenerateConfig) -> Traffic {
        let products = cfg.products.clamp(1, MAX_IDS);
        let start_ms = cfg.start_ms.clamp(0, MAX_TIME_MS);
        Traffic {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            model: Model::new(cfg.profile, products, cfg.hot_products.min(products - 1)),
            users: init_users(cfg.seed, cfg.users.clamp(1, MAX_IDS)),
            events: cfg.events.max(1),
            start_us: start_ms * 1000,
            span_us: cfg.span_ms.clamp(1, MAX_TIME_MS - start_ms) * 1000,
            jitter_us: cfg.jitter_ms.clamp(0, 86_400_000) * 1000,
            late_share: if cfg.late_share.is_nan() { 0.0 } else { cfg.late_share },
            realtime: cfg.realtime,
        }
    }

    /// Draws the event of line `n` (0-based).
    pub(super) fn draft(&mut self, n: u64) -> Draft {
        let base_us = if self.realtime {
            chrono::Utc::now().timestamp_micros()
        } else {
            // i128: n * span overflows i64 for long spans and many events.
            self.start_us + (i128::from(n) * i128::from(self.span_us) / i128::from(self.events)) as i64
        };
        let rng = &mut self.rng;
        let user = below(rng, self.users.len() as u32);
        let product = self.model.pick_product(rng);
        let kind = self.model.pick_kind(product, self.users[user as usize].propensity, rng);
        // Nothing moves before `start`: a day's run must not spill a few
        // events into the previous day's archive partition.
        let floor = if self.realtime { 0 } else { self.start_us };
        let max_jitter = self.jitter_us.min(base_us - floor);
        let jitter = if max_jitter > 0 { rng.random_range(0..=max_jitter) } else { 0 };
        let late = self.late_share > 0.0 && rng.random::<f64>() < self.late_share;
        let back = if late { rng.random_range(LATE_US.0..=LATE_US.1) } else { 0 };
        let late = late && base_us - jitter - back >= floor;
        // One draw for all the small per-mille decisions, 10 bits each.
        let bits = rng.next_u64();
        let field = |i: u32| (bits >> (10 * i)) & 1023;
        let user_state = &mut self.users[user as usize];
        if base_us - user_state.last_us > SESSION_GAP_US || field(1) < 20 {
            user_state.session += 1; // gap, or ~2 %: the user starts a new session
        }
        user_state.last_us = base_us;
        Draft {
            user,
            product,
            kind,
            time_us: base_us - jitter - if late { back } else { 0 },
            late,
            form: match field(0) {
                0..20 => TsForm::EpochMillis,
                20..72 => TsForm::ZuluMillis,
                _ => TsForm::Python,
            },
            category: field(2) >= 10,
            session: (field(3) >= 5).then_some(user_state.session),
            quantity: match field(4) {
                0..100 => 2,
                100..150 => 3,
                _ => 1,
            },
            extra: (field(5) < 5).then_some((bits >> 63) as usize),
        }
    }
}

/// Formats event times. The date part is cached by day number; the time of
/// day is plain integer arithmetic, so jitter that hops between seconds
/// costs nothing.
#[derive(Default)]
pub(super) struct TsFormat {
    day: Option<i64>,
    /// `YYYY-MM-DDT`
    date: String,
}

impl TsFormat {
    pub(super) fn push(&mut self, buf: &mut Vec<u8>, t_us: i64, form: TsForm) {
        if form == TsForm::EpochMillis {
            push_u64(buf, t_us.div_euclid(1000) as u64);
            return;
        }
        let day = t_us.div_euclid(86_400_000_000);
        if self.day != Some(day) {
            // Once a day, so chrono's general formatter costs nothing here.
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0).unwrap_or_default();
            self.date = date.format("%Y-%m-%dT").to_string();
            self.day = Some(day);
        }
        let us_of_day = t_us.rem_euclid(86_400_000_000);
        let secs = (us_of_day / 1_000_000) as u32;
        let micros = (us_of_day % 1_000_000) as u32;
        buf.push(b'"');
        buf.extend_from_slice(self.date.as_bytes());
        push_padded(buf, secs / 3600, 2);
        buf.push(b':');
        push_padded(buf, secs / 60 % 60, 2);
        buf.push(b':');
        push_padded(buf, secs % 60, 2);
        match form {
            TsForm::Python => {
                if micros != 0 {
                    buf.push(b'.');
                    push_padded(buf, micros, 6);
                }
                buf.extend_from_slice(b"+00:00\"");
            }
            _ => {
                buf.push(b'.');
                push_padded(buf, micros / 1000, 3);
                buf.extend_from_slice(b"Z\"");
            }
        }
    }
}

pub(super) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// `v` zero-padded to `width` (≤ 10) digits.
pub(super) fn push_padded(buf: &mut Vec<u8>, v: u32, width: usize) {
    let mut tmp = [b'0'; 10];
    let mut v = v;
    for slot in tmp[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    buf.extend_from_slice(&tmp[..width]);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{messy, parse_valid, run};
    use super::super::{GenerateConfig, LineKind};
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn names_and_catalogue() {
        for p in [Profile::Uniform, Profile::Skewed] {
            assert_eq!(p.to_string().parse::<Profile>(), Ok(p));
        }
        assert_eq!("zipf".parse::<Profile>(), Err(GenerateError::UnknownProfile("zipf".into())));
        let seen: std::collections::BTreeSet<_> = (0..2000).map(category_of).collect();
        assert_eq!(seen.len(), CATEGORIES.len(), "every category is used");
        assert!((0..2000).all(|p| price_cents_of(p) >= 100 && category_of(p) == CATEGORIES[category_index(p)]));
    }

    /// (views, purchases) per (product, 10-minute window start).
    fn window_counts(cfg: &GenerateConfig) -> BTreeMap<(String, i64), (u32, u32)> {
        let mut counts = BTreeMap::new();
        for line in run(cfg).0 {
            let Some(e) = parse_valid(&line) else {
                continue;
            };
            let slot: &mut (u32, u32) = counts.entry((e.product_id, e.time_us.div_euclid(600_000_000))).or_default();
            match e.event_type.as_str() {
                "view" => slot.0 += 1,
                "purchase" => slot.1 += 1,
                _ => {}
            }
        }
        counts
    }

    #[test]
    fn skewed_profile_raises_flash_sales_and_has_converting_best_sellers() {
        // 200k events in one hour: ~3.3k events per hot product per hour,
        // ~650 views and ~2 expected purchases per 10-minute window, over 30
        // (product, window) chances. The top Zipf product gets ~17 % of the
        // rest: thousands of views and hundreds of purchases per window.
        let cfg = GenerateConfig {
            events: 200_000,
            seed: 7,
            profile: Profile::Skewed,
            span_ms: 3_600_000,
            ..GenerateConfig::default()
        };
        let counts = window_counts(&cfg);
        let alert = |(v, p): &(u32, u32)| *v > 100 && *p < 5;
        let hot_alerts: Vec<_> =
            counts.iter().filter(|(k, c)| k.0.as_str() < "p5" && k.0.len() == 2 && alert(c)).collect();
        assert!(hot_alerts.len() >= 10, "hot products should trip the rule: {hot_alerts:?}");
        assert!(
            counts.iter().any(|(k, &(v, p))| k.0 == "p5" && v > 1000 && p >= 50),
            "the top ordinary product should sell well"
        );
        let hot = counts.iter().filter(|(k, _)| k.0.len() == 2 && k.0.as_str() < "p5");
        let (views, purchases) = hot.fold((0, 0), |acc, (_, c)| (acc.0 + c.0, acc.1 + c.1));
        assert!(f64::from(purchases) < 0.01 * f64::from(views), "{purchases} purchases / {views} views");
    }

    #[test]
    fn uniform_profile_has_the_same_funnel_everywhere_and_no_alerts() {
        let cfg = GenerateConfig {
            events: 200_000,
            seed: 3,
            profile: Profile::Uniform,
            products: 50,
            ..GenerateConfig::default()
        };
        let mut per_product: BTreeMap<String, [u32; 3]> = BTreeMap::new();
        for line in run(&cfg).0 {
            let Some(e) = parse_valid(&line) else {
                continue;
            };
            let slot = per_product.entry(e.product_id).or_default();
            match e.event_type.as_str() {
                "view" => slot[0] += 1,
                "add_to_cart" => slot[1] += 1,
                "purchase" => slot[2] += 1,
                _ => {}
            }
        }
        assert_eq!(per_product.len(), 50);
        let mut total = [0u32; 3];
        for (p, c) in &per_product {
            let n = f64::from(c[0] + c[1] + c[2]);
            // ~4000 events per product: 5 % ± 1.5 % is > 4 standard deviations.
            let share = f64::from(c[2]) / n;
            assert!((0.035..0.065).contains(&share), "{p}: purchase share {share}");
            for i in 0..3 {
                total[i] += c[i];
            }
        }
        let n = f64::from(total.iter().sum::<u32>());
        let shares = total.map(|c| f64::from(c) / n);
        assert!((shares[0] - 0.80).abs() < 0.01 && (shares[1] - 0.15).abs() < 0.01, "{shares:?}");
        assert!((shares[2] - 0.05).abs() < 0.01, "{shares:?}");

        // One day over 2000 products: ~7 events per product per window.
        let day = GenerateConfig { events: 200_000, products: 2000, ..cfg };
        assert!(window_counts(&day).values().all(|&(v, _)| v <= 100));
    }

    #[test]
    fn both_buyers_and_window_shoppers_exist() {
        for profile in [Profile::Uniform, Profile::Skewed] {
            let cfg = GenerateConfig { events: 100_000, seed: 11, profile, users: 1000, ..GenerateConfig::default() };
            let mut purchases: BTreeMap<String, u32> = BTreeMap::new();
            for line in run(&cfg).0 {
                let Some(e) = parse_valid(&line) else {
                    continue;
                };
                *purchases.entry(e.user_id).or_default() += u32::from(e.event_type == "purchase");
            }
            let buyers = purchases.values().filter(|&&p| p > 0).count();
            let shoppers = purchases.len() - buyers;
            assert!(buyers > 300 && shoppers > 300, "{profile}: {buyers} buyers, {shoppers} window shoppers");
        }
    }

    #[test]
    fn timestamps_match_chrono_and_python() {
        let mut ts = TsFormat::default();
        for t in
            [0i64, 951_782_400_123_456, super::super::DEFAULT_START_MS * 1000 + 36_000_000_000, 4_107_542_399_999_999]
        {
            let mut buf = Vec::new();
            for form in [TsForm::Python, TsForm::ZuluMillis, TsForm::EpochMillis] {
                ts.push(&mut buf, t, form);
                buf.push(b' ');
            }
            let c = chrono::DateTime::from_timestamp_micros(t).expect("in range");
            let python =
                c.format(if t % 1_000_000 == 0 { "%Y-%m-%dT%H:%M:%S+00:00" } else { "%Y-%m-%dT%H:%M:%S%.6f+00:00" });
            let want = format!("\"{python}\" \"{}\" {} ", c.format("%Y-%m-%dT%H:%M:%S%.3fZ"), t / 1000);
            assert_eq!(String::from_utf8_lossy(&buf), want);
        }
    }

    #[test]
    fn event_times_follow_generation_order_except_jitter_and_late() {
        // Six hours, so few late events are lost to the "never before start" rule.
        let cfg =
            GenerateConfig { malformed_share: 0.0, duplicate_share: 0.0, span_ms: 6 * 3_600_000, ..messy(100_000) };
        let (lines, kinds) = run(&cfg);
        let (start, span, jitter) = (cfg.start_ms * 1000, cfg.span_ms as i128 * 1000, cfg.jitter_ms * 1000);
        for (n, (line, kind)) in lines.iter().zip(&kinds).enumerate() {
            let base = start + (n as i128 * span / 100_000) as i64;
            let t = parse_valid(line).expect("no malformed lines configured").time_us;
            // Millisecond forms truncate, hence the extra millisecond.
            let lo = if *kind == LineKind::Late { base - jitter - 3_600_000_000 - 1000 } else { base - jitter - 1000 };
            let lo = lo.max(start);
            let hi = if *kind == LineKind::Late { base - 900_000_000 } else { base };
            assert!((lo..=hi).contains(&t), "line {n} ({kind:?}): {t} not in {lo}..={hi}");
        }
        let late = kinds.iter().filter(|k| **k == LineKind::Late).count();
        assert!((1600..2000).contains(&late), "{late} late of 100k at 2 % (minus the first hour)");
    }
}
