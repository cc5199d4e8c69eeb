use super::*;
use crate::trace::samples;

fn story_app(mode: Mode) -> App {
    let mut app = App::new(mode, false);
    for r in samples::story() {
        app.apply(&r);
    }
    app
}

fn live() -> App {
    story_app(Mode::Live { dropped: 0 })
}

fn names(app: &App) -> Vec<String> {
    app.rows().iter().map(|m| m.name.clone()).collect()
}

#[test]
fn unsafe_modules_come_first_by_default() {
    let app = live();
    assert_eq!(names(&app), ["rtbad", "ext4"]);
    assert_eq!(app.selected().unwrap().name, "rtbad");
}

#[test]
fn arrows_and_jk_move_the_selection_and_stop_at_the_ends() {
    let mut app = live();
    assert_eq!(app.on_key(Key::Down), Action::None);
    assert_eq!(app.selected().unwrap().name, "ext4");
    app.on_key(Key::Char('j'));
    assert_eq!(
        app.selected().unwrap().name,
        "ext4",
        "stays on the last row"
    );
    app.on_key(Key::Char('k'));
    app.on_key(Key::Up);
    assert_eq!(app.selected().unwrap().name, "rtbad");
}

#[test]
fn the_selection_follows_its_module_when_the_order_changes() {
    let mut app = live();
    app.on_key(Key::Down);
    app.on_key(Key::Char('s')); // by name
    assert_eq!(app.view.sort, SortKey::Name);
    assert_eq!(names(&app), ["ext4", "rtbad"]);
    assert_eq!(app.selected().unwrap().name, "ext4");
    app.on_key(Key::Char('S'));
    assert_eq!(names(&app), ["rtbad", "ext4"]);
    assert_eq!(app.selected_index(), Some(1));
}

#[test]
fn slash_filters_by_typing_and_esc_clears() {
    let mut app = live();
    app.on_key(Key::Char('/'));
    for c in "ext".chars() {
        app.on_key(Key::Char(c));
    }
    assert!(app.view.editing_filter);
    assert_eq!(names(&app), ["ext4"]);
    // q while typing is text, not quit.
    assert_eq!(app.on_key(Key::Char('q')), Action::None);
    assert!(names(&app).is_empty());
    app.on_key(Key::Backspace);
    app.on_key(Key::Enter);
    assert!(!app.view.editing_filter);
    assert_eq!(names(&app), ["ext4"]);
    app.on_key(Key::Esc);
    assert_eq!(names(&app).len(), 2);
    // By verdict word too.
    app.on_key(Key::Char('/'));
    for c in "unsafe".chars() {
        app.on_key(Key::Char(c));
    }
    assert_eq!(names(&app), ["rtbad"]);
}

#[test]
fn help_opens_with_question_mark_and_any_key_closes_it() {
    let mut app = live();
    app.on_key(Key::Char('?'));
    assert!(app.view.help);
    assert_eq!(app.on_key(Key::Down), Action::None);
    assert!(!app.view.help);
    assert_eq!(
        app.selected().unwrap().name,
        "rtbad",
        "the key only closed help"
    );
    app.on_key(Key::Char('?'));
    assert_eq!(app.on_key(Key::Char('q')), Action::Quit);
}

#[test]
fn tab_cycles_the_panes_and_enter_zooms_the_detail() {
    let mut app = live();
    app.on_key(Key::Tab);
    assert_eq!(app.view.focus, Pane::Detail);
    app.on_key(Key::Tab);
    assert_eq!(app.view.focus, Pane::Log);
    app.on_key(Key::BackTab);
    assert_eq!(app.view.focus, Pane::Detail);
    app.on_key(Key::Tab);
    app.on_key(Key::Tab);
    app.on_key(Key::Enter);
    assert!(app.view.detail_zoomed);
    assert_eq!(app.view.focus, Pane::Detail);
    app.on_key(Key::Down);
    assert_eq!(app.view.detail_scroll, 1);
    app.on_key(Key::Esc);
    assert!(!app.view.detail_zoomed);
    assert_eq!(app.view.focus, Pane::Modules);
}

#[test]
fn the_log_scrolls_back_and_forward_within_bounds() {
    let mut app = live();
    app.view.focus = Pane::Log;
    app.on_key(Key::Up);
    app.on_key(Key::Up);
    assert_eq!(app.view.log_scroll, 2);
    app.on_key(Key::Down);
    assert_eq!(app.view.log_scroll, 1);
    app.on_key(Key::Home);
    assert_eq!(app.view.log_scroll, app.model.log.len() - 1);
    app.on_key(Key::End);
    assert_eq!(app.view.log_scroll, 0);
}

#[test]
fn replay_keys_are_actions_only_in_replay() {
    let mut app = live();
    assert_eq!(app.on_key(Key::Char(' ')), Action::None);
    assert_eq!(app.on_key(Key::Right), Action::None);
    assert_eq!(app.on_key(Key::Char('n')), Action::None);
    let status = ReplayStatus::new("t".into(), 1.0, (0, 0));
    let mut app = story_app(Mode::Replay(status));
    for (k, a) in [
        (Key::Char(' '), Action::TogglePause),
        (Key::Right, Action::StepForward),
        (Key::Left, Action::StepBack),
        (Key::Char('+'), Action::Faster),
        (Key::Char('-'), Action::Slower),
        (Key::Char('g'), Action::ToStart),
        (Key::Char('G'), Action::ToEnd),
        (Key::Char('n'), Action::NextMark),
        (Key::CtrlC, Action::Quit),
    ] {
        assert_eq!(app.on_key(k), a, "{k:?}");
    }
}

#[test]
fn every_key_the_app_handles_is_in_the_help() {
    let help: String = help_lines(true)
        .iter()
        .chain(help_lines(false).iter())
        .map(|(k, _)| format!("{k} "))
        .collect();
    for k in [
        "q", "?", "j", "k", "Tab", "Enter", "Esc", "/", "s", "S", "space", "+", "-", "g", "G", "n",
        "PgUp", "Home",
    ] {
        assert!(help.contains(k), "{k} missing from help");
    }
}
