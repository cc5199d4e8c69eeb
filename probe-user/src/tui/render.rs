//! Draws an [`App`] into a ratatui frame: header, modules table, detail,
//! event log, footer, help overlay. Reads state only. Every string from the
//! kernel or a trace was sanitised when it entered the model.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Wrap},
};

use super::{
    app::{App, Pane, SortKey, help_lines},
    detail::detail_lines,
    header,
    module_entry::{ModuleEntry, ModuleState},
    palette::{Palette, time_of},
};

/// Calls per tick as a line of block characters (blank: no calls).
pub fn sparkline(samples: impl Iterator<Item = u64> + Clone, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let n = samples.clone().count();
    let shown: Vec<u64> = samples.skip(n.saturating_sub(width)).collect();
    let max = shown.iter().copied().max().unwrap_or(0);
    let mut s: String = std::iter::repeat_n(' ', width - shown.len()).collect();
    for v in shown {
        s.push(if v == 0 || max == 0 {
            ' '
        } else {
            BARS[((v * 7).div_ceil(max)) as usize]
        });
    }
    s
}

fn rate_text(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else if r >= 10.0 {
        format!("{r:.0}")
    } else if r > 0.0 {
        format!("{r:.1}")
    } else {
        "0".to_owned()
    }
}

/// The smallest terminal the view draws in: header, a table with one row,
/// footer. Below it, a message says so.
pub const MIN_ROWS: u16 = 10;
pub const MIN_COLS: u16 = 40;
/// Below this many rows, the table takes the whole body (Enter still
/// shows the detail, and the events pane is reached by Tab then Enter).
const SPLIT_ROWS: u16 = 24;

pub fn draw(frame: &mut Frame, app: &App) {
    let p = Palette {
        no_color: app.no_color,
    };
    let area = frame.area();
    if area.height < MIN_ROWS || area.width < MIN_COLS {
        draw_too_small(frame, area);
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, header, app, &p);
    if app.view.log_zoomed {
        draw_log(frame, body, app, &p);
    } else if app.view.detail_zoomed {
        draw_detail(frame, body, app, &p);
    } else if area.height < SPLIT_ROWS {
        draw_table(frame, body, app, &p);
    } else {
        let [table, bottom] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
        draw_table(frame, table, app, &p);
        let [detail, log] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(bottom);
        draw_detail(frame, detail, app, &p);
        draw_log(frame, log, app, &p);
    }
    draw_footer(frame, footer, app);
    if app.view.help {
        draw_help(frame, app);
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App, p: &Palette) {
    frame.render_widget(Paragraph::new(header::header_lines(app, p)), area);
}

fn pane_block<'a>(title: String, focused: bool) -> Block<'a> {
    let b = Block::bordered().title(title);
    if focused {
        b.border_style(Style::default().add_modifier(Modifier::BOLD))
            .title_style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED))
    } else {
        b
    }
}

fn draw_table(frame: &mut Frame, area: Rect, app: &App, p: &Palette) {
    let now = app.model.now_ns;
    let rows = app.rows();
    let arrow = if app.view.descending { "▼" } else { "▲" };
    let mut title = format!(
        " Modules {} · sort: {} {arrow} ",
        rows.len(),
        app.view.sort.title()
    );
    if app.view.editing_filter || !app.view.filter.is_empty() {
        title.push_str(&format!(
            "· filter: {}{} ",
            app.view.filter,
            if app.view.editing_filter { "▏" } else { "" }
        ));
    }
    let header_cells = [
        ("verdict", SortKey::Verdict),
        ("module", SortKey::Name),
        ("state", SortKey::State),
        ("taint", SortKey::Taints),
        ("used/imp", SortKey::Used),
        ("calls/s", SortKey::Rate),
        ("trend", SortKey::Rate),
        ("anom", SortKey::Anomalies),
    ]
    .map(|(t, k)| {
        let s = Style::default().add_modifier(Modifier::BOLD);
        Cell::from(t).style(if k == app.view.sort && t != "trend" {
            s.add_modifier(Modifier::UNDERLINED)
        } else {
            s
        })
    });
    let table_rows: Vec<Row> = rows.iter().map(|m| module_row(m, now, p)).collect();
    let widths = [
        Constraint::Length(12),
        Constraint::Min(12),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(5),
    ];
    let table = Table::new(table_rows, widths)
        .header(Row::new(header_cells))
        .block(pane_block(
            title,
            app.view.focus == Pane::Modules && !app.view.detail_zoomed,
        ))
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// One module's row of the table.
fn module_row<'a>(m: &ModuleEntry, now: u64, p: &Palette) -> Row<'a> {
    let r = m.rating();
    let state = m.state(now);
    let anomalies = m.anomaly_count();
    Row::new(vec![
        Cell::from(format!("{} {}", r.symbol(), r.word())).style(p.rating(r)),
        Cell::from(m.name.clone()),
        Cell::from(state.word()).style(match state {
            ModuleState::Unloaded => p.fg(Color::DarkGray),
            ModuleState::Loading => p.fg(Color::Cyan),
            ModuleState::Live => Style::default(),
        }),
        Cell::from(m.taints().to_owned()),
        Cell::from(format!(
            "{}/{}",
            m.used(),
            m.imported().map_or("?".to_owned(), |n| n.to_string())
        )),
        Cell::from(rate_text(m.rate(now))),
        Cell::from(sparkline(m.spark.iter().copied(), 10)).style(p.fg(Color::Cyan)),
        Cell::from(if anomalies > 0 {
            format!("! {anomalies}")
        } else {
            "0".to_owned()
        })
        .style(if anomalies > 0 {
            p.fg(Color::Red)
        } else {
            Style::default()
        }),
    ])
}

/// The detail pane's lines for a module.
fn draw_detail(frame: &mut Frame, area: Rect, app: &App, p: &Palette) {
    let focused = app.view.focus == Pane::Detail;
    let Some(m) = app.selected() else {
        let para = Paragraph::new("No module yet.").block(pane_block(" Detail ".into(), focused));
        frame.render_widget(para, area);
        return;
    };
    let lines = detail_lines(app, m, p.no_color);
    let title = format!(
        " {} (Enter: {}) ",
        m.name,
        if app.view.detail_zoomed {
            "back"
        } else {
            "zoom"
        }
    );
    let para = Paragraph::new(lines)
        .block(pane_block(title, focused))
        .wrap(Wrap { trim: false })
        .scroll((app.view.detail_scroll.min(u16::MAX as usize) as u16, 0));
    frame.render_widget(para, area);
}

/// "The terminal is W×H; the view needs at least …": instead of an empty frame.
fn draw_too_small(frame: &mut Frame, area: Rect) {
    let text = format!(
        "terminal too small ({}×{}): modscope needs at least {MIN_COLS}×{MIN_ROWS} · q quits",
        area.width, area.height
    );
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

/// One event as rows of at most `width` columns: time and kind, then its
/// text, continued on indented rows (never cut).
fn event_rows(
    e: &super::model::LogEntry,
    m: &super::model::Model,
    p: &Palette,
    width: usize,
) -> Vec<Line<'static>> {
    let (time, kind) = (
        format!("{} ", time_of(m, e.ts_ns)),
        format!("{} ", e.kind.word()),
    );
    let text: Vec<char> = e.text.chars().collect();
    let first = width
        .saturating_sub(time.chars().count() + kind.chars().count())
        .max(1);
    let rest = width.saturating_sub(2).max(1);
    let (head, mut tail) = text.split_at(first.min(text.len()));
    let mut rows = vec![Line::from(vec![
        Span::raw(time),
        Span::styled(kind, p.log(e.kind)),
        Span::raw(head.iter().collect::<String>()),
    ])];
    while !tail.is_empty() {
        let (piece, more) = tail.split_at(rest.min(tail.len()));
        rows.push(Line::raw(format!("  {}", piece.iter().collect::<String>())));
        tail = more;
    }
    rows
}

/// The newest events that fit, each whole (none is cut): counted from the
/// newest back.
fn draw_log(frame: &mut Frame, area: Rect, app: &App, p: &Palette) {
    let m = &app.model;
    let (rows, width) = (
        area.height.saturating_sub(2) as usize,
        area.width.saturating_sub(2).max(1) as usize,
    );
    let end = m.log.len().saturating_sub(app.view.log_scroll);
    let mut start = end;
    let mut shown: Vec<Vec<Line>> = Vec::new();
    let mut used = 0;
    while start > 0 {
        let event = event_rows(&m.log[start - 1], m, p, width);
        if used + event.len() > rows && start < end {
            break;
        }
        used += event.len();
        shown.push(event);
        start -= 1;
    }
    let lines: Vec<Line> = shown.into_iter().rev().flatten().collect();
    let title = if app.view.log_scroll > 0 {
        format!(
            " Events ({} older hidden, {} newer) ",
            start, app.view.log_scroll
        )
    } else {
        format!(" Events {} ", m.log.len() as u64 + m.log_dropped)
    };
    let para = Paragraph::new(lines).block(pane_block(title, app.view.focus == Pane::Log));
    frame.render_widget(para, area);
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let text = if app.view.editing_filter {
        " type to filter · Enter keep · Esc clear".to_owned()
    } else if app.is_replay() {
        " q quit · ? help · space pause · ←→ step · +- speed · g/G start/end · n next mark · / filter · s sort"
            .to_owned()
    } else {
        " q quit · ? help · ↑↓ move · Enter detail · Tab pane · / filter · s sort".to_owned()
    };
    frame.render_widget(
        Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn draw_help(frame: &mut Frame, app: &App) {
    let lines: Vec<Line> = help_lines(app.is_replay())
        .into_iter()
        .map(|(k, what)| Line::raw(format!(" {k:<20} {what}")))
        .collect();
    let area = frame.area();
    let h = (lines.len() as u16 + 2).min(area.height);
    let w = 76.min(area.width);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys (any key closes) ")),
        rect,
    );
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
