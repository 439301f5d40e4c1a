//! The human-readable alert format on stdout, as the seed printed it.

use std::io::Write;

use crate::alert::{Alert, AlertStatus};

const RULE: &str = "============================================================";

/// Renders one alert as the seed's console block.
pub fn render(a: &Alert) -> String {
    let title = match a.status {
        AlertStatus::Final => "FLASH SALE ALERT",
        AlertStatus::Provisional => "FLASH SALE ALERT (provisional)",
        AlertStatus::Withdrawn => "FLASH SALE ALERT WITHDRAWN",
    };
    format!(
        "{RULE}\n{title}\n{RULE}\nProduct ID: {}\nCategory: {}\nWindow: {} .. {}\nViews: {}\nAdd to cart: {}\nPurchases: {}\nConversion Rate: {:.2}%\nSuggestion: {}\n{RULE}\n",
        a.product_id,
        a.category,
        a.window_start,
        a.window_end,
        a.views,
        a.carts,
        a.purchases,
        a.conversion_rate,
        a.suggestion
    )
}

/// Prints an alert; a closed stdout (e.g. `| head`) is not an error worth
/// stopping the pipeline for, so write errors are ignored here.
pub fn print(a: &Alert) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(render(a).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{engine::ClosedWindow, Counts};

    #[test]
    fn has_the_seed_fields() {
        let w = ClosedWindow {
            product: "p7".into(),
            category: "toys".into(),
            start: 0,
            end: 600_000_000,
            counts: Counts { views: 150, carts: 3, purchases: 2, other: 0, total: 155 },
        };
        let text = render(&Alert::new(AlertStatus::Final, &w, None, 0));
        for needle in [
            "FLASH SALE ALERT",
            "Product ID: p7",
            "Views: 150",
            "Purchases: 2",
            "Conversion Rate: 1.33%",
            "Suggestion: ",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
