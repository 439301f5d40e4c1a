//! Writing one day's reports (SPEC §5): CSVs, the seed's plain-text
//! summary, JSON and a self-contained HTML page with inline SVG charts.
//!
//! The day's directory is replaced as a whole: everything is written to a
//! hidden sibling directory, which is then renamed into place, so a reader
//! sees the old reports or the new ones, never a mix.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::metrics::Hundredths;
use super::DailyReport;
use crate::event::timestamp::{format_rfc3339, now_micros};

/// Writes the reports of `r` to `<reports>/<date>/`; returns that path.
pub fn write(reports: &Path, r: &DailyReport) -> anyhow::Result<PathBuf> {
    let fin = reports.join(&r.date);
    let tmp = reports.join(format!(".{}.tmp-{}", r.date, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let generated_at = format_rfc3339(now_micros());
    csv_file(
        &tmp.join("segment_summary.csv"),
        &["segment", "user_count", "avg_views_per_user", "avg_purchases_per_user", "avg_engagement_score"],
        r.segments.iter().map(|s| {
            vec![
                s.segment.clone(),
                s.user_count.to_string(),
                s.avg_views_per_user.to_string(),
                s.avg_purchases_per_user.to_string(),
                s.avg_engagement_score.to_string(),
            ]
        }),
    )?;
    csv_file(
        &tmp.join("user_segments.csv"),
        &[
            "user_id",
            "total_views",
            "total_carts",
            "total_purchases",
            "unique_products",
            "sessions",
            "segment",
            "engagement_score",
        ],
        r.users.iter().map(|(u, s)| {
            vec![
                u.clone(),
                s.views.to_string(),
                s.carts.to_string(),
                s.purchases.to_string(),
                s.unique_products.to_string(),
                s.sessions.to_string(),
                s.segment().to_string(),
                s.engagement().to_string(),
            ]
        }),
    )?;
    csv_file(
        &tmp.join("top_products.csv"),
        &["product_id", "category", "view_count", "unique_viewers"],
        r.top_products.iter().map(|p| {
            vec![
                p.product_id().to_string(),
                p.category().to_string(),
                p.view_count().to_string(),
                p.unique_viewers.to_string(),
            ]
        }),
    )?;
    csv_file(
        &tmp.join("conversion_rates.csv"),
        &[
            "category",
            "views",
            "carts",
            "purchases",
            "unique_users",
            "view_to_cart_rate",
            "cart_to_purchase_rate",
            "overall_conversion_rate",
        ],
        r.categories.iter().map(|c| {
            vec![
                c.category.clone(),
                c.views.to_string(),
                c.carts.to_string(),
                c.purchases.to_string(),
                c.unique_users.to_string(),
                c.view_to_cart_rate().to_string(),
                c.cart_to_purchase_rate().to_string(),
                c.overall_conversion_rate().to_string(),
            ]
        }),
    )?;
    std::fs::write(tmp.join("summary.txt"), summary_text(r))?;
    std::fs::write(tmp.join("report.json"), serde_json::to_string_pretty(&json(r, &generated_at))?)?;
    std::fs::write(tmp.join("report.html"), html(r, &generated_at))?;
    // Swap: the old directory moves aside, the new one in, the old goes.
    let old = reports.join(format!(".{}.old-{}", r.date, std::process::id()));
    if fin.exists() {
        std::fs::rename(&fin, &old).with_context(|| format!("moving {} aside", fin.display()))?;
    }
    std::fs::rename(&tmp, &fin).with_context(|| format!("publishing {}", fin.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(fin)
}

fn csv_file(path: &Path, header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record(header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The seed's plain-text daily report.
pub fn summary_text(r: &DailyReport) -> String {
    let mut s = String::new();
    let rule = "=".repeat(60);
    let _ = writeln!(s, "{rule}\nDAILY E-COMMERCE REPORT - {}\n{rule}", r.date);
    if r.is_empty() {
        let _ = writeln!(s, "\nNo data for {}: the archive has no events for this date.", r.date);
        return s;
    }
    let _ = writeln!(s, "\nTotal events: {}\n\nUSER SEGMENTS", r.events);
    for g in &r.segments {
        let _ = writeln!(
            s,
            "  {}: {} users, avg views {}, avg purchases {}, avg engagement {}",
            g.segment, g.user_count, g.avg_views_per_user, g.avg_purchases_per_user, g.avg_engagement_score
        );
    }
    let _ = writeln!(s, "\nTOP {} VIEWED PRODUCTS", super::TOP_N);
    for (i, p) in r.top_products.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {}. {} ({}): {} views, {} unique viewers",
            i + 1,
            p.product_id(),
            p.category(),
            p.view_count(),
            p.unique_viewers
        );
    }
    let _ = writeln!(s, "\nCONVERSION RATES BY CATEGORY");
    for c in &r.categories {
        let _ = writeln!(
            s,
            "  {}: view->cart {}%, cart->purchase {}%, overall {}%",
            c.category,
            c.view_to_cart_rate(),
            c.cart_to_purchase_rate(),
            c.overall_conversion_rate()
        );
    }
    s
}

fn json(r: &DailyReport, generated_at: &str) -> serde_json::Value {
    let h = |v: Hundredths| serde_json::json!(v.as_f64());
    serde_json::json!({
        "date": r.date,
        "has_data": !r.is_empty(),
        "event_count": r.events,
        "input_files": r.input_files,
        "generated_at": generated_at,
        "version": env!("CARGO_PKG_VERSION"),
        "segment_summary": r.segments.iter().map(|g| serde_json::json!({
            "segment": g.segment, "user_count": g.user_count, "avg_views_per_user": h(g.avg_views_per_user),
            "avg_purchases_per_user": h(g.avg_purchases_per_user), "avg_engagement_score": h(g.avg_engagement_score)})).collect::<Vec<_>>(),
        "top_products": r.top_products.iter().map(|p| serde_json::json!({
            "product_id": p.product_id(), "category": p.category(), "view_count": p.view_count(), "unique_viewers": p.unique_viewers})).collect::<Vec<_>>(),
        "conversion_rates": r.categories.iter().map(|c| serde_json::json!({
            "category": c.category, "views": c.views, "carts": c.carts, "purchases": c.purchases, "unique_users": c.unique_users,
            "view_to_cart_rate": h(c.view_to_cart_rate()), "cart_to_purchase_rate": h(c.cart_to_purchase_rate()),
            "overall_conversion_rate": h(c.overall_conversion_rate())})).collect::<Vec<_>>(),
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Horizontal bar chart as inline SVG.
fn bars(title: &str, rows: &[(String, f64, String)]) -> String {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-9);
    let h = 26 * rows.len() + 10;
    let mut s =
        format!("<h2>{}</h2><svg role=\"img\" width=\"720\" height=\"{h}\" viewBox=\"0 0 720 {h}\">", esc(title));
    for (i, (label, v, text)) in rows.iter().enumerate() {
        let y = 5 + 26 * i;
        let w = (v / max * 440.0).max(1.0);
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text><rect x=\"200\" y=\"{y}\" width=\"{w:.1}\" height=\"20\" fill=\"#3b7dd8\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 15,
            esc(label),
            205.0 + w,
            y + 15,
            esc(text)
        );
    }
    s + "</svg>"
}

fn html(r: &DailyReport, generated_at: &str) -> String {
    let mut body = String::new();
    if r.is_empty() {
        body.push_str("<p class=\"empty\">No data for this date: the archive has no events for it.</p>");
    } else {
        let seg: Vec<_> = r
            .segments
            .iter()
            .map(|g| (g.segment.clone(), g.user_count as f64, format!("{} users", g.user_count)))
            .collect();
        body += &bars("User segments", &seg);
        let top: Vec<_> = r
            .top_products
            .iter()
            .map(|p| {
                (
                    format!("{} ({})", p.product_id(), p.category()),
                    p.view_count() as f64,
                    format!("{} views", p.view_count()),
                )
            })
            .collect();
        body += &bars("Top viewed products", &top);
        body += "<h2>Funnel per category: view → cart → purchase</h2><table><tr><th>category</th><th>views</th><th>carts</th><th>purchases</th><th>view→cart</th><th>cart→purchase</th><th>overall</th></tr>";
        for c in &r.categories {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}%</td><td>{}%</td><td>{}%</td></tr>",
                esc(&c.category),
                c.views,
                c.carts,
                c.purchases,
                c.view_to_cart_rate(),
                c.cart_to_purchase_rate(),
                c.overall_conversion_rate()
            );
        }
        body += "</table>";
        let funnel: Vec<_> = r
            .categories
            .iter()
            .flat_map(|c| {
                [("views", c.views), ("carts", c.carts), ("purchases", c.purchases)]
                    .into_iter()
                    .map(move |(k, v)| (format!("{} {k}", c.category), v as f64, v.to_string()))
            })
            .collect();
        body += &bars("Funnel (events)", &funnel);
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>clickwatch daily report {date}</title>\
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style>\
</head><body><h1>Daily report {date}</h1><p>{events} events from {files} archive files; generated {generated_at} by clickwatch {version}.</p>{body}</body></html>\n",
        date = esc(&r.date),
        events = r.events,
        files = r.input_files.len(),
        version = env!("CARGO_PKG_VERSION"),
    )
}
