//! The user API as the Node.js router answers it: `/currentUser` and `/attributes` through the
//! router, logged in at the development XSUAA, with the user's attributes from its userinfo.

mod support;

use serde_json::{json, Value};
use support::idp::Browser;
use support::{gateway, Gateway};
use xsuaa_dev::{DevXsuaa, User};

async fn setup(user: User) -> (DevXsuaa, Gateway, Browser) {
    let dev = DevXsuaa::builder().user(user).start().await.expect("development XSUAA");
    let router = gateway(json!({
        "routes": [{"source": "^/user-api(.*)$", "target": "$1", "service": "sap-approuter-userapi"}]
    }))
    .xsuaa(&dev, &dev.credentials())
    .start()
    .await;
    let browser = Browser::new(&dev);
    (dev, router, browser)
}

/// Logs in on the way to `path` and returns its JSON answer.
async fn fetch(browser: &Browser, router: &Gateway, path: &str) -> Value {
    let (response, _) = browser.navigate(&router.url(path)).await;
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
    assert_eq!(response.headers()["cache-control"], "no-cache, no-store");
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn attributes_are_merged_at_the_top_level() {
    let user = User::new("jane.doe")
        .with_attribute("cost_center", &["1000", "2000"])
        .with_attribute("country", &["DE"]);
    let (dev, router, browser) = setup(user).await;
    let scopes = json!(["openid", format!("{}.Display", dev.xsappname())]);
    let current = fetch(&browser, &router, "/user-api/currentUser").await;
    assert_eq!(
        current,
        json!({
            "firstname": "Jane", "lastname": "Doe", "email": "jane.doe@example.com", "name": "jane.doe",
            "scopes": current["scopes"], "displayName": "Jane Doe (jane.doe)"
        })
    );
    assert!(current["scopes"].as_array().unwrap().contains(&scopes[1]), "{current}");
    let attributes = fetch(&browser, &router, "/user-api/attributes").await;
    assert_eq!(
        attributes,
        json!({
            "firstname": "Jane", "lastname": "Doe", "email": "jane.doe@example.com", "name": "jane.doe",
            "scopes": current["scopes"], "cost_center": ["1000", "2000"], "country": ["DE"]
        })
    );
    assert_eq!(dev.stats().userinfo_requests, 1);
}

#[tokio::test]
async fn a_user_without_names_is_shown_by_login_name() {
    let mut user = User::new("nameless");
    user.given_name = String::new();
    user.family_name = String::new();
    let (_dev, router, browser) = setup(user).await;
    let current = fetch(&browser, &router, "/user-api/currentUser").await;
    assert_eq!(current["displayName"], "nameless");
    assert_eq!(current["name"], "nameless");
    assert_eq!(current["firstname"], "");
    assert_eq!(current["lastname"], "");
}

#[tokio::test]
async fn attributes_fall_back_to_the_basics_when_userinfo_fails() {
    let user = User::new("jane.doe").with_attribute("cost_center", &["1000"]);
    let (dev, router, browser) = setup(user).await;
    let current = fetch(&browser, &router, "/user-api/currentUser").await;
    dev.set_userinfo_failure(Some(http::StatusCode::INTERNAL_SERVER_ERROR));
    let attributes = fetch(&browser, &router, "/user-api/attributes").await;
    assert_eq!(
        attributes,
        json!({
            "firstname": "Jane", "lastname": "Doe", "email": "jane.doe@example.com", "name": "jane.doe",
            "scopes": current["scopes"]
        })
    );
    assert_eq!(dev.stats().userinfo_requests, 1);
}
