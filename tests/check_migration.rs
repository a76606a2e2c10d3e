//! `approuter check` as a migration report, on app folders shaped like real Node.js router apps
//! (`tests/apps/*`): what works unchanged, what differs on purpose, what is refused, what has no
//! effect, and a start script that uses the extension API. Each report is compared with
//! `tests/apps/<app>.report` (`UPDATE_REPORTS=1` rewrites them).

mod support;

use std::path::Path;

fn check(app: &str) -> (Option<i32>, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps").join(app);
    let output = std::process::Command::new(support::binary())
        .arg("check")
        .arg("--dir")
        .arg(&dir)
        .env_clear()
        .output()
        .expect("run approuter check");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let start = stdout
        .find("migration from the Node.js router:")
        .unwrap_or_else(|| panic!("no migration report:\n{stdout}"));
    (output.status.code(), stdout[start..].to_string())
}

fn assert_report(app: &str, exit: i32) {
    let (code, report) = check(app);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/apps/{app}.report"));
    if std::env::var_os("UPDATE_REPORTS").is_some() {
        std::fs::write(&path, &report).expect("write report");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        report, expected,
        "{app}: the report changed (UPDATE_REPORTS=1 rewrites it)"
    );
    assert_eq!(code, Some(exit), "{app}: exit status\n{report}");
}

#[test]
fn a_plain_ui_with_resources_works_unchanged() {
    assert_report("plain-ui", 0);
}

#[test]
fn a_custom_start_script_using_the_extension_api_fails_the_check() {
    assert_report("extension", 64);
}

#[test]
fn an_app_with_replacements_and_env_destinations_is_told_what_differs() {
    assert_report("replace-dest", 3);
}
