//! Configuration errors, table-driven: each row breaks a valid base configuration in one way and names
//! the key path the error must point at. Every row runs in-process through `load_config`; rows marked
//! `binary` also run the real binary, which must exit 64 and name the key path on stderr.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{binary, gateway, GatewayBuilder};

/// Exit status of the binary for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

/// A configuration under test: xs-app.json and the `destinations` variable, each as JSON or raw text.
struct Case {
    xs_app: Value,
    /// Replaces xs-app.json with this text (for "not JSON").
    xs_app_text: Option<&'static str>,
    destinations: Value,
    /// Replaces the `destinations` variable with this text (for "not JSON").
    destinations_text: Option<&'static str>,
}

impl Case {
    fn base() -> Case {
        Case {
            xs_app: json!({
                "authenticationMethod": "none",
                "sessionTimeout": 20,
                "routes": [
                    {"source": "^/api/(.*)$", "target": "/$1", "destination": "backend", "httpMethods": ["GET", "POST"]},
                    {"source": "^/ui/(.*)$", "target": "/$1", "localDir": "webapp"}
                ],
                "errorPage": [{"status": 404, "file": "errors/404.html"}],
                "responseHeaders": [{"name": "X-Custom", "value": "1"}]
            }),
            xs_app_text: None,
            destinations: json!([
                {"name": "backend", "url": "http://127.0.0.1:1"},
                {"name": "other", "url": "https://example.invalid/base", "timeout": 500}
            ]),
            destinations_text: None,
        }
    }

    fn top(&mut self) -> &mut serde_json::Map<String, Value> {
        self.xs_app.as_object_mut().expect("top-level object")
    }

    fn route(&mut self, index: usize) -> &mut serde_json::Map<String, Value> {
        self.xs_app["routes"][index].as_object_mut().expect("route object")
    }

    fn destination(&mut self, index: usize) -> &mut serde_json::Map<String, Value> {
        self.destinations[index].as_object_mut().expect("destination object")
    }

    fn builder(&self) -> GatewayBuilder {
        let destinations = match self.destinations_text {
            Some(text) => text.to_string(),
            None => self.destinations.to_string(),
        };
        let mut builder = gateway(self.xs_app.clone())
            .env("destinations", destinations)
            .file("webapp/index.html", "<h1>ui</h1>")
            .file("errors/404.html", "<h1>not here</h1>");
        if let Some(text) = self.xs_app_text {
            // Files are written after xs-app.json, so this replaces it.
            builder = builder.file("xs-app.json", text);
        }
        builder
    }
}

struct Row {
    name: &'static str,
    mutate: fn(&mut Case),
    /// A substring of the problem's key path, e.g. `xs-app.json: routes[0].source`.
    path: &'static str,
    /// A substring of the problem's message ("" for any).
    message: &'static str,
    /// Also run the real binary on this configuration.
    binary: bool,
}

const ROWS: &[Row] = &[
    Row {
        name: "unknown top-level key",
        mutate: |case| {
            case.top().insert("welcomeFiles".into(), json!("index.html"));
        },
        path: "xs-app.json: welcomeFiles",
        message: "unknown field",
        binary: false,
    },
    Row {
        name: "unknown route key",
        mutate: |case| {
            case.route(0).insert("destinaton".into(), json!("backend"));
        },
        path: "xs-app.json: routes[0].destinaton",
        message: "unknown field",
        binary: true,
    },
    Row {
        name: "wrong type",
        mutate: |case| {
            case.top().insert("sessionTimeout".into(), json!("20"));
        },
        path: "xs-app.json: sessionTimeout",
        message: "invalid type",
        binary: false,
    },
    Row {
        name: "wrong type in a destination",
        mutate: |case| {
            case.destination(1).insert("timeout".into(), json!("500ms"));
        },
        path: "destinations[1].timeout",
        message: "invalid type",
        binary: false,
    },
    Row {
        name: "invalid regex in source",
        mutate: |case| {
            case.route(1).insert("source".into(), json!("^/ui/(.*$"));
        },
        path: "xs-app.json: routes[1].source",
        message: "invalid regex",
        binary: true,
    },
    Row {
        name: "route names an undefined destination",
        mutate: |case| {
            case.route(0).insert("destination".into(), json!("nowhere"));
        },
        path: "xs-app.json: routes[0].destination",
        message: "nowhere",
        binary: false,
    },
    Row {
        name: "destination with a bad URL",
        mutate: |case| {
            case.destination(1).insert("url".into(), json!("not a url"));
        },
        path: "destinations[1].url",
        message: "",
        binary: true,
    },
    Row {
        name: "destination with a scheme that is not http(s)/ws(s)",
        mutate: |case| {
            case.destination(1)
                .insert("url".into(), json!("ftp://example.invalid/"));
        },
        path: "destinations[1].url",
        message: "scheme",
        binary: false,
    },
    Row {
        name: "duplicate destination names",
        mutate: |case| {
            case.destination(1).insert("name".into(), json!("backend"));
        },
        path: "destinations[1].name",
        message: "duplicate",
        binary: false,
    },
    Row {
        name: "destinations is not JSON",
        mutate: |case| case.destinations_text = Some("[{\"name\": \"backend\","),
        path: "destinations",
        message: "not valid JSON",
        binary: true,
    },
    Row {
        name: "route without source",
        mutate: |case| {
            case.route(0).remove("source");
        },
        path: "xs-app.json: routes[0]",
        message: "source",
        binary: false,
    },
    Row {
        name: "route with both destination and localDir",
        mutate: |case| {
            case.route(1).insert("destination".into(), json!("backend"));
        },
        path: "xs-app.json: routes[1]",
        message: "exactly one",
        binary: false,
    },
    Row {
        name: "localDir folder missing",
        mutate: |case| {
            case.route(1).insert("localDir".into(), json!("no-such-folder"));
        },
        path: "xs-app.json: routes[1].localDir",
        message: "no-such-folder",
        binary: false,
    },
    Row {
        name: "httpMethods with an unknown method",
        mutate: |case| {
            case.route(0).insert("httpMethods".into(), json!(["GET", "FETCH"]));
        },
        path: "xs-app.json: routes[0].httpMethods",
        message: "FETCH",
        binary: false,
    },
    Row {
        name: "target names a group the source does not have",
        mutate: |case| {
            case.route(0).insert("target".into(), json!("/$5"));
        },
        path: "xs-app.json: routes[0].target",
        message: "$5",
        binary: false,
    },
    Row {
        name: "errorPage with both file and path",
        mutate: |case| {
            case.top().insert(
                "errorPage".into(),
                json!([{"status": 404, "file": "errors/404.html", "path": "/ui/404"}]),
            );
        },
        path: "xs-app.json: errorPage[0]",
        message: "exactly one",
        binary: false,
    },
    Row {
        name: "responseHeaders sets set-cookie",
        mutate: |case| {
            case.top().insert(
                "responseHeaders".into(),
                json!([{"name": "X-Ok", "value": "1"}, {"name": "Set-Cookie", "value": "a=b"}]),
            );
        },
        path: "xs-app.json: responseHeaders[1]",
        message: "Set-Cookie",
        binary: false,
    },
    Row {
        name: "sessionTimeout 0",
        mutate: |case| {
            case.top().insert("sessionTimeout".into(), json!(0));
        },
        path: "xs-app.json: sessionTimeout",
        message: "at least 1",
        binary: false,
    },
    Row {
        name: "logoutPage without logoutEndpoint",
        mutate: |case| {
            case.top()
                .insert("logout".into(), json!({"logoutPage": "/ui/bye.html"}));
        },
        path: "xs-app.json: logout.logoutPage",
        message: "logoutEndpoint",
        binary: false,
    },
    Row {
        name: "xs-app.json is not JSON",
        mutate: |case| case.xs_app_text = Some("{\"routes\": [}"),
        path: "xs-app.json",
        message: "not valid JSON",
        binary: true,
    },
];

/// The problems of a configuration that must be invalid, as `path: message` lines.
fn problems(case: &Case) -> Result<Vec<(String, String)>, String> {
    let (_dir, result) = case.builder().config();
    match result {
        Ok(_) => Err("configuration was accepted".into()),
        Err(errors) => Ok(errors
            .problems
            .into_iter()
            .map(|problem| (problem.path, problem.message))
            .collect()),
    }
}

#[test]
fn valid_base_configuration_passes() {
    let (_dir, result) = Case::base().builder().config();
    let config = result.unwrap_or_else(|errors| panic!("base configuration rejected: {errors}"));
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.destinations.len(), 2);
    assert_eq!(config.session_timeout, Duration::from_secs(20 * 60));
}

#[test]
fn each_mistake_is_reported_with_its_key_path() {
    let mut failures = Vec::new();
    for row in ROWS {
        let mut case = Case::base();
        (row.mutate)(&mut case);
        match problems(&case) {
            Err(why) => failures.push(format!("{}: {why}", row.name)),
            Ok(found) => {
                let hit = found
                    .iter()
                    .any(|(path, message)| path.contains(row.path) && message.contains(row.message));
                if !hit {
                    failures.push(format!(
                        "{}: no problem at {:?} mentioning {:?}; got {found:?}",
                        row.name, row.path, row.message
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "rows failed:\n{}", failures.join("\n"));
}

/// What the binary printed and how it ended.
struct Run {
    code: Option<i32>,
    stderr: String,
}

/// Runs the real binary on `case` with the environment set on the command only.
async fn run_binary(case: &Case) -> Run {
    let (dir, _) = case.builder().config();
    let destinations = match case.destinations_text {
        Some(text) => text.to_string(),
        None => case.destinations.to_string(),
    };
    let child = tokio::process::Command::new(binary())
        .arg("--dir")
        .arg(dir.path())
        .env_clear()
        .env("destinations", destinations)
        // Should the configuration be accepted after all, bind nowhere that matters.
        .env("PORT", "0")
        .env("XS_BIND_ADDRESS", "127.0.0.1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the approuter binary");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("binary did not exit on an invalid configuration")
        .expect("binary output");
    Run {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Lines of stderr that list a problem.
fn problem_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.trim_start().starts_with("- "))
        .collect()
}

#[tokio::test]
async fn binary_exits_64_and_names_the_key_path() {
    let mut failures = Vec::new();
    for row in ROWS.iter().filter(|row| row.binary) {
        let mut case = Case::base();
        (row.mutate)(&mut case);
        let run = run_binary(&case).await;
        if run.code != Some(EXIT_CONFIG) {
            failures.push(format!(
                "{}: exit code {:?}, stderr:\n{}",
                row.name, run.code, run.stderr
            ));
            continue;
        }
        let named = problem_lines(&run.stderr)
            .iter()
            .any(|line| line.contains(row.path) && line.contains(row.message));
        if !named {
            failures.push(format!(
                "{}: stderr names no problem at {:?} mentioning {:?}:\n{}",
                row.name, row.path, row.message, run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "binary rows failed:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn binary_lists_every_problem_at_once() {
    let mut case = Case::base();
    case.route(0).insert("destinaton".into(), json!("backend"));
    case.route(1).insert("localDir".into(), json!("no-such-folder"));
    case.destination(1).insert("url".into(), json!("not a url"));
    let expected = [
        "xs-app.json: routes[0].destinaton",
        "xs-app.json: routes[1].localDir",
        "destinations[1].url",
    ];

    let in_process = problems(&case).expect("three mistakes must be rejected");
    assert_eq!(in_process.len(), 3, "in-process problems: {in_process:?}");

    let run = run_binary(&case).await;
    assert_eq!(run.code, Some(EXIT_CONFIG), "stderr:\n{}", run.stderr);
    let lines = problem_lines(&run.stderr);
    assert_eq!(lines.len(), 3, "want one line per problem, stderr:\n{}", run.stderr);
    for want in expected {
        assert!(
            lines.iter().any(|line| line.contains(want)),
            "no stderr line names {want:?}:\n{}",
            run.stderr
        );
    }
}
