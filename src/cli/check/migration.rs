//! The migration report of `approuter check`: for an app folder of the Node.js router, which of
//! its settings work unchanged, which work differently on purpose, which are refused, which have
//! no effect, and whether its start script runs code of its own against the extension API.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::config::settings::{self, Setting, Source, Status};
use crate::config::Env;

/// The extension API's entry points: a start script naming one of them customises the router
/// with code that cannot run here.
const EXTENSION_API: [&str; 16] = [
    "beforeRequestHandler",
    "beforeErrorHandler",
    "beforeRequestHandlerWS",
    "firstWS",
    ".first",
    "insertMiddleware",
    "extensions",
    "getToken",
    "getRouterConfig",
    "getSessionStore",
    "getSessionSecret",
    "createRouterConfig",
    "resolveUaaConfig",
    "afterRequestHandler",
    "backendTimeout",
    "xsappConfig",
];

/// What a migration to this router means for one app folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    /// Settings in use that work as in the Node.js router.
    pub unchanged: Vec<String>,
    /// Settings in use that work differently on purpose: name, why.
    pub differs: Vec<(String, String)>,
    /// Settings in use that stop start-up here: name, why.
    pub refused: Vec<(String, String)>,
    /// Settings in use that change nothing here (a warning at start): name, why.
    pub no_effect: Vec<(String, String)>,
    /// Settings that only a Node.js process reads: name, why.
    pub node_only: Vec<(String, String)>,
    /// Code of the app's own that would not run: file, what it uses.
    pub extension_code: Vec<(String, String)>,
    /// Facts about the app: the package and the Node.js router's version it used.
    pub facts: Vec<String>,
}

impl Migration {
    /// Whether the app would behave differently here: something refused, code that would not
    /// run, or a setting that works differently.
    pub fn changes_behaviour(&self) -> bool {
        !(self.refused.is_empty() && self.extension_code.is_empty() && self.differs.is_empty())
    }

    fn sort(&mut self, name: String, setting: &Setting, value: Option<&str>) {
        if value.is_some_and(|value| setting.is_harmless(value)) {
            self.unchanged.push(name);
            return;
        }
        match setting.status {
            Status::Honoured | Status::Own => self.unchanged.push(name),
            Status::Differs(why) => self.differs.push((name, why.to_string())),
            Status::Refused(why) => self.refused.push((name, why.to_string())),
            Status::Warned(why) => self.no_effect.push((name, why.to_string())),
            Status::NodeOnly(why) => self.node_only.push((name, why.to_string())),
        }
    }
}

/// Sorts the settings `env` (with `default-env.json` applied) and `xs_app` use, and reads the
/// folder's `package.json` and the start script it names.
pub fn assess(dir: &Path, env: &Env, xs_app: Option<&Value>) -> Migration {
    let mut migration = Migration::default();
    for (name, value) in env.iter() {
        if let Some(setting) = settings::env_var(name) {
            migration.sort(name.to_string(), setting, Some(value));
        }
    }
    if let Some(Value::Object(top)) = xs_app {
        for key in top.keys() {
            if let Some(setting) = settings::xs_app_key(Source::XsApp, key) {
                migration.sort(format!("xs-app.json: {key}"), setting, None);
            }
        }
        let routes = top.get("routes").and_then(Value::as_array);
        let local_dir = routes
            .into_iter()
            .flatten()
            .any(|route| route.get("localDir").is_some());
        if !local_dir && dir.join("resources").is_dir() {
            migration.facts.push(
                "resources/ is served for ^/(.*) after the routes, as the Node.js router's implicit route".into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for route in routes.into_iter().flatten().filter_map(Value::as_object) {
            for key in route.keys() {
                if let (Some(setting), true) = (settings::xs_app_key(Source::Route, key), seen.insert(key.clone())) {
                    migration.sort(format!("xs-app.json: routes[].{key}"), setting, None);
                }
            }
        }
    }
    read_package(dir, &mut migration);
    migration
}

/// `package.json`: the Node.js router's version, and a start script that runs a file of the app's
/// own which uses the extension API.
fn read_package(dir: &Path, migration: &mut Migration) {
    let Ok(text) = std::fs::read_to_string(dir.join("package.json")) else {
        return;
    };
    let Ok(package) = serde_json::from_str::<Value>(&text) else {
        migration
            .extension_code
            .push(("package.json".into(), "not valid JSON".into()));
        return;
    };
    let name = package.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
    let version = ["dependencies", "devDependencies"]
        .iter()
        .find_map(|section| package.get(section)?.get("@sap/approuter")?.as_str());
    migration.facts.push(match version {
        Some(version) => format!("package {name} uses @sap/approuter {version}"),
        None => format!("package {name} does not depend on @sap/approuter"),
    });
    let Some(start) = package.pointer("/scripts/start").and_then(Value::as_str) else {
        return;
    };
    for script in scripts_run_by(start) {
        if script.contains("node_modules/@sap/approuter/") {
            migration
                .facts
                .push(format!("the start script runs the Node.js router itself ({script})"));
            continue;
        }
        let Ok(code) = std::fs::read_to_string(dir.join(&script)) else {
            migration
                .extension_code
                .push((script.clone(), "named by scripts.start, but cannot be read".into()));
            continue;
        };
        let requires_router = [
            "require('@sap/approuter')",
            "require(\"@sap/approuter\")",
            "from '@sap/approuter'",
            "from \"@sap/approuter\"",
        ]
        .iter()
        .any(|form| code.contains(form));
        if !requires_router {
            continue;
        }
        let used: Vec<&str> = EXTENSION_API
            .iter()
            .filter(|entry| code.contains(*entry))
            .map(|entry| entry.trim_start_matches('.'))
            .collect();
        let what = if used.is_empty() {
            "starts the Node.js router from code of its own; replace it with the approuter binary".to_string()
        } else {
            format!(
                "uses the Node.js extension API ({}), which does not exist here: move that logic into a backend \
                 behind a route, or into xs-app.json settings",
                used.join(", ")
            )
        };
        migration.extension_code.push((script, what));
    }
}

/// The JavaScript files a start script runs with `node` (`node server.js`, `node ./lib/start.js
/// --port 5000`, `cross-env X=1 node start.js && …`).
fn scripts_run_by(start: &str) -> Vec<String> {
    let words: Vec<&str> = start.split_whitespace().collect();
    let mut scripts = Vec::new();
    for (index, word) in words.iter().enumerate() {
        if *word != "node" && !word.ends_with("/node") {
            continue;
        }
        if let Some(script) = words[index + 1..]
            .iter()
            .find(|word| !word.starts_with('-'))
            .filter(|word| word.ends_with(".js") || word.ends_with(".mjs") || word.ends_with(".cjs"))
        {
            scripts.push(script.trim_start_matches("./").to_string());
        }
    }
    scripts
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "migration from the Node.js router:")?;
        for fact in &self.facts {
            writeln!(f, "  {fact}")?;
        }
        let groups: [(&str, &[(String, String)]); 5] = [
            ("refused: start-up stops", &self.refused),
            ("code that will not run", &self.extension_code),
            ("works differently on purpose (docs/compatibility.md)", &self.differs),
            ("no effect here (warned at start)", &self.no_effect),
            ("Node.js only", &self.node_only),
        ];
        for (title, items) in groups {
            if items.is_empty() {
                continue;
            }
            writeln!(f, "  {title} ({}):", items.len())?;
            for (name, why) in items {
                writeln!(f, "    {name}: {why}")?;
            }
        }
        if !self.unchanged.is_empty() {
            writeln!(
                f,
                "  works unchanged ({}): {}",
                self.unchanged.len(),
                self.unchanged.join(", ")
            )?;
        }
        if self.changes_behaviour() {
            writeln!(f, "  verdict: the app behaves differently here; review the lines above")
        } else {
            writeln!(f, "  verdict: the app works unchanged")
        }
    }
}

#[cfg(test)]
mod tests;
