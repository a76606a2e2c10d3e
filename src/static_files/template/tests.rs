use proptest::prelude::*;
use serde_json::json;

use super::{Error, Template};

fn render(text: &str, view: serde_json::Value) -> String {
    Template::parse(text).expect("template").render(&view)
}

#[test]
fn variables_escape_the_eight_characters_of_mustache_js() {
    let view = json!({"x": "a&b<c>d\"e'f/g`h=i"});
    assert_eq!(
        render("{{x}}", view.clone()),
        "a&amp;b&lt;c&gt;d&quot;e&#39;f&#x2F;g&#x60;h&#x3D;i"
    );
    assert_eq!(render("{{{x}}}", view.clone()), "a&b<c>d\"e'f/g`h=i");
    assert_eq!(render("{{& x}}", view), "a&b<c>d\"e'f/g`h=i");
}

#[test]
fn dotted_names_walk_objects_and_unknown_names_are_empty() {
    let view = json!({"svc": {"url": "https://x", "n": 2, "f": 1.0, "b": true, "z": null}});
    assert_eq!(
        render(
            "{{{svc.url}}} {{svc.n}} {{svc.f}} {{svc.b}} [{{svc.z}}] [{{nope}}] [{{svc.nope.deeper}}]",
            view
        ),
        "https://x 2 1 true [] [] []"
    );
}

#[test]
fn sections_iterate_lists_and_push_objects() {
    let view = json!({"list": [{"n": "a"}, {"n": "b"}], "obj": {"n": "o"}, "n": "top", "empty": [], "no": false});
    assert_eq!(render("{{#list}}{{n}},{{/list}}", view.clone()), "a,b,");
    assert_eq!(render("{{#obj}}{{n}}{{/obj}}", view.clone()), "o");
    // The outer context is still seen from inside a section.
    assert_eq!(render("{{#obj}}{{n}}-{{list.0.n}}{{/obj}}", view.clone()), "o-");
    assert_eq!(
        render("{{#empty}}x{{/empty}}{{^empty}}none{{/empty}}", view.clone()),
        "none"
    );
    assert_eq!(
        render("{{#no}}x{{/no}}{{^no}}off{{/no}}{{^missing}}!{{/missing}}", view),
        "off!"
    );
}

#[test]
fn comments_and_standalone_lines_disappear() {
    let view = json!({"on": true, "x": "v"});
    assert_eq!(render("a{{! a comment }}b", view.clone()), "ab");
    assert_eq!(
        render("<ul>\n  {{#on}}\n  <li>{{x}}</li>\n  {{/on}}\n</ul>\n", view),
        "<ul>\n  <li>v</li>\n</ul>\n"
    );
}

#[test]
fn broken_templates_are_errors() {
    assert_eq!(Template::parse("a {{x"), Err(Error::UnclosedTag(2)));
    assert_eq!(Template::parse("{{#a}}"), Err(Error::UnclosedSection("a".into())));
    assert!(matches!(Template::parse("{{/a}}"), Err(Error::UnopenedSection { .. })));
    assert!(matches!(
        Template::parse("{{#a}}{{/b}}"),
        Err(Error::MismatchedSection { .. })
    ));
    assert_eq!(Template::parse("{{ }}"), Err(Error::EmptyTag(0)));
    assert_eq!(Template::parse("{{=<% %>=}}"), Err(Error::Delimiters(0)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics(text in "(\\{\\{|\\}\\}|[#^/&!>=. a-z{}\n]){0,40}") {
        if let Ok(template) = Template::parse(&text) {
            let _ = template.render(&json!({"a": [1, {"b": "x"}], "b": {"c": "<"}}));
        }
    }

    #[test]
    fn text_without_tags_renders_unchanged(text in any::<String>()) {
        prop_assume!(!text.contains("{{"));
        prop_assert_eq!(render(&text, json!({})), text);
    }
}
