//! The batch metrics of SPEC §5, as the seed's PySpark job defines them.
//!
//! Rates and averages are computed from integers and rounded to two
//! decimals half away from zero exactly (no binary floating-point surprises
//! like 1.005 → 1.00): they are kept as hundredths in an `i64`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::EventKind;

/// A value rounded to two decimals, stored in hundredths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hundredths(pub i64);

impl Hundredths {
    /// `num / den` rounded half away from zero (0 when `den` is 0).
    pub fn ratio(num: u64, den: u64) -> Hundredths {
        if den == 0 {
            return Hundredths(0);
        }
        let (n, d) = (num as u128 * 100, den as u128);
        Hundredths(((2 * n + d) / (2 * d)) as i64)
    }

    /// `num / den × 100` as a percentage, rounded the same way.
    pub fn percent(num: u64, den: u64) -> Hundredths {
        Hundredths::ratio(num.saturating_mul(100), den)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl fmt::Display for Hundredths {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// Per-user totals of one day.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserStats {
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub unique_products: u64,
    /// Distinct non-null session ids.
    pub sessions: u64,
}

pub const BUYER: &str = "Buyer";
pub const WINDOW_SHOPPER: &str = "Window Shopper";

impl UserStats {
    /// Counts `n` events of `kind` (other kinds count in no total).
    pub fn count(&mut self, kind: EventKind, n: u64) {
        match kind {
            EventKind::View => self.views += n,
            EventKind::AddToCart => self.carts += n,
            EventKind::Purchase => self.purchases += n,
            EventKind::Other => {}
        }
    }

    pub fn segment(&self) -> &'static str {
        if self.purchases > 0 {
            BUYER
        } else {
            WINDOW_SHOPPER
        }
    }

    /// views + 3 × carts + 10 × purchases.
    pub fn engagement(&self) -> u64 {
        self.views + 3 * self.carts + 10 * self.purchases
    }
}

/// One row of the segment summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub segment: String,
    pub user_count: u64,
    pub avg_views_per_user: Hundredths,
    pub avg_purchases_per_user: Hundredths,
    pub avg_engagement_score: Hundredths,
}

/// Segment summary from per-user stats, ordered by segment name.
pub fn segment_summary<'a>(users: impl Iterator<Item = &'a UserStats>) -> Vec<SegmentSummary> {
    let mut acc: std::collections::BTreeMap<&'static str, (u64, u64, u64, u64)> = Default::default();
    for u in users {
        let a = acc.entry(u.segment()).or_default();
        a.0 += 1;
        a.1 += u.views;
        a.2 += u.purchases;
        a.3 += u.engagement();
    }
    acc.into_iter()
        .map(|(segment, (n, views, purchases, engagement))| SegmentSummary {
            segment: segment.to_string(),
            user_count: n,
            avg_views_per_user: Hundredths::ratio(views, n),
            avg_purchases_per_user: Hundredths::ratio(purchases, n),
            avg_engagement_score: Hundredths::ratio(engagement, n),
        })
        .collect()
}

/// Views of one (product, category).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ProductViews {
    /// Sort key first: view_count descending, then product ascending.
    pub rank: (std::cmp::Reverse<u64>, String, String),
    pub unique_viewers: u64,
}

impl ProductViews {
    pub fn new(product: &str, category: &str, views: u64, viewers: u64) -> Self {
        ProductViews {
            rank: (std::cmp::Reverse(views), product.to_string(), category.to_string()),
            unique_viewers: viewers,
        }
    }
    pub fn product_id(&self) -> &str {
        &self.rank.1
    }
    pub fn category(&self) -> &str {
        &self.rank.2
    }
    pub fn view_count(&self) -> u64 {
        self.rank.0 .0
    }
}

/// The view → cart → purchase funnel of one category.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct CategoryFunnel {
    pub category: String,
    pub views: u64,
    pub carts: u64,
    pub purchases: u64,
    pub unique_users: u64,
}

impl CategoryFunnel {
    /// An empty funnel of `category`.
    pub fn new(category: &str) -> Self {
        CategoryFunnel { category: category.to_string(), views: 0, carts: 0, purchases: 0, unique_users: 0 }
    }

    /// Counts `n` events of `kind` (other kinds count in no total).
    pub fn count(&mut self, kind: EventKind, n: u64) {
        match kind {
            EventKind::View => self.views += n,
            EventKind::AddToCart => self.carts += n,
            EventKind::Purchase => self.purchases += n,
            EventKind::Other => {}
        }
    }
    pub fn view_to_cart_rate(&self) -> Hundredths {
        Hundredths::percent(self.carts, self.views)
    }
    pub fn cart_to_purchase_rate(&self) -> Hundredths {
        Hundredths::percent(self.purchases, self.carts)
    }
    pub fn overall_conversion_rate(&self) -> Hundredths {
        Hundredths::percent(self.purchases, self.views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero_and_exact() {
        assert_eq!(Hundredths::ratio(1005, 1000).to_string(), "1.01"); // 1.005 in binary is 1.00499…
        assert_eq!(Hundredths::ratio(1, 3).to_string(), "0.33");
        assert_eq!(Hundredths::ratio(2, 3).to_string(), "0.67");
        assert_eq!(Hundredths::percent(1, 8).to_string(), "12.50");
        assert_eq!(Hundredths::percent(5, 0).to_string(), "0.00");
        assert_eq!(Hundredths::ratio(7, 1).to_string(), "7.00");
    }

    #[test]
    fn user_stats_and_segments() {
        let mut s = UserStats { unique_products: 2, sessions: 2, ..UserStats::default() };
        s.count(EventKind::View, 3);
        s.count(EventKind::AddToCart, 1);
        s.count(EventKind::Other, 5);
        assert_eq!((s.views, s.carts, s.purchases, s.unique_products, s.sessions), (3, 1, 0, 2, 2));
        assert_eq!(s.segment(), WINDOW_SHOPPER);
        assert_eq!(s.engagement(), 6);
        let summary = segment_summary([s.clone(), UserStats { purchases: 1, views: 2, ..s }].iter());
        assert_eq!(summary.iter().map(|r| r.segment.as_str()).collect::<Vec<_>>(), vec![BUYER, WINDOW_SHOPPER]);
    }
}
