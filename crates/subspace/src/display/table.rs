//! Top-k tables.

use std::fmt;

use crate::readout::{TokenProb, TopK};

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Shows a token with its leading space visible.
fn shown(token: &str) -> String {
    format!("{token:?}")
}

impl fmt::Display for TopK {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for TokenProb { token, prob, .. } in &self.0 {
            writeln!(f, "{:>16} ({prob:.2})", shown(token))?;
        }
        Ok(())
    }
}

impl TopK {
    pub fn to_html(&self) -> String {
        let mut s = String::from(
            "<table><thead><tr><th>#</th><th>token</th><th>id</th><th>p</th></tr></thead><tbody>",
        );
        for (i, t) in self.0.iter().enumerate() {
            s.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{:.3}</td></tr>",
                i + 1,
                html_escape(&shown(&t.token)),
                t.id,
                t.prob
            ));
        }
        s.push_str("</tbody></table>");
        s
    }

    /// evcxr's display hook: an HTML table in a notebook.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
            self.to_html()
        );
    }
}

/// Two top-k lists side by side (e.g. base vs patched).
#[derive(Debug, Clone)]
pub struct Comparison {
    pub titles: [String; 2],
    pub left: TopK,
    pub right: TopK,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>24}   {:>24}", self.titles[0], self.titles[1])?;
        let n = self.left.0.len().max(self.right.0.len());
        for i in 0..n {
            let cell = |t: Option<&TokenProb>| {
                t.map(|t| format!("{} ({:.2})", shown(&t.token), t.prob))
                    .unwrap_or_default()
            };
            writeln!(
                f,
                "{:>24}   {:>24}",
                cell(self.left.0.get(i)),
                cell(self.right.0.get(i))
            )?;
        }
        Ok(())
    }
}

impl Comparison {
    pub fn evcxr_display(&self) {
        let html = format!(
            "<div style=\"display:flex;gap:2em\"><div><b>{}</b>{}</div><div><b>{}</b>{}</div></div>",
            html_escape(&self.titles[0]),
            self.left.to_html(),
            html_escape(&self.titles[1]),
            self.right.to_html()
        );
        println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT");
    }
}
