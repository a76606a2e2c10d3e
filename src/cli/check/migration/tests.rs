use super::*;

#[test]
fn start_scripts_name_the_files_node_runs() {
    let rows: &[(&str, &[&str])] = &[
        (
            "node node_modules/@sap/approuter/approuter.js",
            &["node_modules/@sap/approuter/approuter.js"],
        ),
        ("node server.js", &["server.js"]),
        (
            "node --max-old-space-size=256 ./lib/start.js --port 5000",
            &["lib/start.js"],
        ),
        (
            "cross-env DEBUG=1 node start.mjs && node after.cjs",
            &["start.mjs", "after.cjs"],
        ),
        ("/usr/bin/node app.js", &["app.js"]),
        ("npx approuter", &[]),
        ("node", &[]),
        ("node -e 1", &[]),
    ];
    for (start, expected) in rows {
        assert_eq!(scripts_run_by(start), *expected, "{start}");
    }
}

#[test]
fn harmless_values_count_as_unchanged() {
    let env = Env::from_pairs([("NODE_TLS_REJECT_UNAUTHORIZED", "1"), ("HTTP2_SUPPORT", "true")]);
    let migration = assess(Path::new("/nonexistent"), &env, None);
    assert_eq!(migration.unchanged, ["NODE_TLS_REJECT_UNAUTHORIZED"]);
    assert_eq!(migration.refused.len(), 1, "{migration:?}");
    assert!(migration.changes_behaviour());
}
