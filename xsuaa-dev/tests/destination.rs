//! The development Destination service: who may look destinations up, and
//! what each authentication type answers.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{cert_of, client, mtls_client, post_token};
use xsuaa_dev::{DevXsuaa, ServiceKind};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn claims(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .expect("jwt")
        .claims
}

/// A token answer's access token for `form` at certurl, as client `kind`
/// (`None`: the XSUAA client).
async fn token(xsuaa: &DevXsuaa, kind: Option<ServiceKind>, form: &[(&str, &str)]) -> String {
    let (credentials, client_id) = match kind {
        Some(kind) => (xsuaa.service_credentials(kind).unwrap(), xsuaa.service_client_id(kind)),
        None => (xsuaa.credentials(), xsuaa.client_id()),
    };
    let mut form = form.to_vec();
    form.push(("client_id", &client_id));
    let (status, body) = post_token(&mtls_client(xsuaa, &cert_of(&credentials)), &xsuaa.cert_url(), &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn destination_cc(xsuaa: &DevXsuaa) -> String {
    token(
        xsuaa,
        Some(ServiceKind::Destination),
        &[("grant_type", "client_credentials")],
    )
    .await
}

async fn login(xsuaa: &DevXsuaa) -> String {
    token(
        xsuaa,
        None,
        &[
            ("grant_type", "password"),
            ("username", "jane.doe"),
            ("password", "secret"),
        ],
    )
    .await
}

/// The login token exchanged for a destination user token.
async fn destination_user(xsuaa: &DevXsuaa) -> String {
    let login = login(xsuaa).await;
    token(
        xsuaa,
        Some(ServiceKind::Destination),
        &[("grant_type", JWT_BEARER), ("assertion", &login)],
    )
    .await
}

/// `GET .../destinations/{name}` with an optional bearer and X-user-token.
async fn find(xsuaa: &DevXsuaa, name: &str, bearer: Option<&str>, user_token: Option<&str>) -> (StatusCode, Value) {
    let mut request = client(xsuaa).get(format!(
        "{}/destination-configuration/v1/destinations/{name}",
        xsuaa.destination_url()
    ));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(user_token) = user_token {
        request = request.header("X-user-token", user_token);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn refuses_callers_without_a_destination_client_token() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let xsuaa_cc = token(&xsuaa, None, &[("grant_type", "client_credentials")]).await;
    let connectivity_cc = token(
        &xsuaa,
        Some(ServiceKind::Connectivity),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let login = login(&xsuaa).await;
    let mut expired = claims(&destination_cc(&xsuaa).await);
    expired["iat"] = json!(1_000);
    expired["exp"] = json!(2_000);
    let expired = xsuaa.mint_token(expired);
    let mut foreign_zone = claims(&destination_cc(&xsuaa).await);
    foreign_zone["zid"] = json!("other-zone");
    let foreign_zone = xsuaa.mint_token(foreign_zone);
    let other = DevXsuaa::builder().start().await.unwrap();
    let other_key = destination_cc(&other).await;

    let mut refused = 0;
    for (case, bearer) in [
        ("no token", None),
        ("the XSUAA client's token", Some(xsuaa_cc.as_str())),
        ("the connectivity client's token", Some(connectivity_cc.as_str())),
        ("a login token of the XSUAA client", Some(login.as_str())),
        ("an expired token", Some(expired.as_str())),
        ("a token of another zone", Some(foreign_zone.as_str())),
        ("a token signed by another XSUAA", Some(other_key.as_str())),
        ("not a jwt", Some("abc")),
    ] {
        let (status, body) = find(&xsuaa, "no-auth", bearer, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert!(body.get("destinationConfiguration").is_none(), "{case}");
        refused += 1;
    }
    // An X-user-token that is not a user token of this zone is refused too.
    let destination_cc = destination_cc(&xsuaa).await;
    for user_token in [expired.as_str(), xsuaa_cc.as_str(), "abc"] {
        let (status, _) = find(&xsuaa, "no-auth", Some(&destination_cc), Some(user_token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user_token}");
        refused += 1;
    }
    let stats = xsuaa.stats();
    assert_eq!(stats.destination_requests_refused, refused);
    assert_eq!(xsuaa.destination_lookups("no-auth"), refused);
}

#[tokio::test]
async fn unknown_destination_and_unknown_paths_are_404() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let (status, body) = find(&xsuaa, "nope", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["ErrorMessage"].is_string());
    assert_eq!(xsuaa.destination_lookups("nope"), 1);
    let http = client(&xsuaa);
    for path in [
        "/destination-configuration/v1/destinations/",
        "/destination-configuration/v1/destinations/a/b",
        "/oauth/token",
    ] {
        let resp = http
            .get(format!("{}{path}", xsuaa.destination_url()))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn no_authentication_and_basic_destinations() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let (status, body) = find(&xsuaa, "no-auth", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["owner"],
        json!({"SubaccountId": xsuaa.zone_id(), "InstanceId": null})
    );
    let configuration = &body["destinationConfiguration"];
    assert_eq!(configuration["Name"], "no-auth");
    assert_eq!(configuration["Type"], "HTTP");
    assert_eq!(configuration["Authentication"], "NoAuthentication");
    assert_eq!(configuration["ProxyType"], "Internet");
    assert_eq!(configuration["URL.headers.x-api-key"], "k-123");
    assert!(body.get("authTokens").is_none());
    assert!(body.get("certificates").is_none());

    let (status, body) = find(&xsuaa, "basic", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    let encoded = STANDARD.encode("alice:wonderland");
    assert_eq!(
        body["authTokens"],
        json!([{
            "type": "Basic",
            "value": encoded,
            "http_header": {"key": "Authorization", "value": format!("Basic {encoded}")},
        }])
    );
    assert_eq!(xsuaa.destination_lookups("no-auth"), 1);
    assert_eq!(xsuaa.destination_lookups("basic"), 1);
}

#[tokio::test]
async fn oauth2_client_credentials_destination_gets_a_token_or_an_error() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let (status, body) = find(&xsuaa, "oauth-cc", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let auth = &body["authTokens"][0];
    assert_eq!(auth["type"], "Bearer");
    assert_eq!(auth["expires_in"], "3600");
    assert!(auth.get("error").is_none());
    let value = auth["value"].as_str().unwrap();
    assert_eq!(auth["http_header"]["value"], format!("Bearer {value}"));
    let token = claims(value);
    assert_eq!(token["cid"], "sb-backend!t1");
    assert_eq!(token["grant_type"], "client_credentials");

    // A token service other than this XSUAA cannot be reached: the call still
    // answers 200, with the error in authTokens[0].
    let (status, body) = find(&xsuaa, "token-error", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    let auth = &body["authTokens"][0];
    assert_eq!(auth["type"], "");
    assert_eq!(auth["value"], "");
    assert!(auth["error"].as_str().unwrap().contains("token.invalid"));
    assert!(auth.get("http_header").is_none());
}

#[tokio::test]
async fn user_token_exchange_destinations_exchange_the_callers_user_token() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let destination_cc = destination_cc(&xsuaa).await;
    let destination_user = destination_user(&xsuaa).await;
    let login = login(&xsuaa).await;
    for name in ["user-exchange", "jwt-bearer"] {
        // The exchanged user token as bearer (what the router sends for a
        // logged-in user), and a cc bearer with X-user-token (preferLocal).
        for (bearer, user_token) in [
            (destination_user.as_str(), None),
            (destination_cc.as_str(), Some(login.as_str())),
            (destination_user.as_str(), Some(login.as_str())),
        ] {
            let (status, body) = find(&xsuaa, name, Some(bearer), user_token).await;
            assert_eq!(status, StatusCode::OK, "{name}: {body}");
            let auth = &body["authTokens"][0];
            assert_eq!(auth["type"], "Bearer", "{name}");
            let token = claims(auth["value"].as_str().unwrap());
            assert_eq!(token["user_name"], "jane.doe");
            assert_eq!(token["cid"], "sb-backend!t1");
            assert_eq!(token["grant_type"], JWT_BEARER);
        }
        // Without any user token there is nothing to exchange.
        let (status, body) = find(&xsuaa, name, Some(&destination_cc), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["authTokens"][0]["error"].is_string(), "{name}: {body}");
    }
    assert_eq!(xsuaa.destination_lookups("user-exchange"), 4);
    assert_eq!(xsuaa.destination_lookups("jwt-bearer"), 4);
}

#[tokio::test]
async fn destinations_come_from_the_builder_or_json() {
    let xsuaa = DevXsuaa::builder()
        .no_destinations()
        .destination(
            "erp",
            [
                ("URL", "http://127.0.0.1:9/api"),
                ("ProxyType", "Internet"),
                ("sap-client", "100"),
            ],
        )
        .start()
        .await
        .unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let (status, body) = find(&xsuaa, "erp", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["destinationConfiguration"]["sap-client"], "100");
    let (status, _) = find(&xsuaa, "no-auth", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let json = r#"{"mtls": {"URL": "https://b.example.org", "ProxyType": "Internet",
        "Authentication": "ClientCertificateAuthentication", "KeyStoreLocation": "k.p12",
        "certificates": [{"Name": "k.p12", "Content": "AAAA", "Type": "CERTIFICATE"}]}}"#;
    let xsuaa = DevXsuaa::builder()
        .destinations_json(json)
        .unwrap()
        .start()
        .await
        .unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let (status, body) = find(&xsuaa, "mtls", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["certificates"][0]["Name"], "k.p12");
    assert!(body.get("authTokens").is_none());
    assert!(body["destinationConfiguration"].get("certificates").is_none());

    for bad in [
        "[]",
        r#"{"a": 1}"#,
        r#"{"a": {"URL": 1}}"#,
        r#"{"a": {"certificates": {}}}"#,
        "{",
    ] {
        assert!(DevXsuaa::builder().destinations_json(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn destinations_change_while_the_server_runs() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let (status, _) = find(&xsuaa, "erp", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    xsuaa.set_destination("erp", [("URL", "http://127.0.0.1:9/v1"), ("ProxyType", "Internet")]);
    let (status, body) = find(&xsuaa, "erp", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["destinationConfiguration"]["URL"], "http://127.0.0.1:9/v1");

    xsuaa.set_destination("erp", [("URL", "http://127.0.0.1:9/v2"), ("ProxyType", "Internet")]);
    let (_, body) = find(&xsuaa, "erp", Some(&bearer), None).await;
    assert_eq!(body["destinationConfiguration"]["URL"], "http://127.0.0.1:9/v2");
    assert_eq!(body["destinationConfiguration"]["Name"], "erp");

    xsuaa.remove_destination("erp");
    xsuaa.remove_destination("no-auth");
    for name in ["erp", "no-auth"] {
        let (status, _) = find(&xsuaa, name, Some(&bearer), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
    }
    let (status, _) = find(&xsuaa, "basic", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_configured_failure_answers_every_find_until_restored() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let bearer = destination_cc(&xsuaa).await;
    for failure in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::SERVICE_UNAVAILABLE] {
        xsuaa.set_destination_failure(Some(failure));
        for (name, bearer) in [
            ("no-auth", Some(bearer.as_str())),
            ("nope", Some(bearer.as_str())),
            ("basic", None),
        ] {
            let (status, body) = find(&xsuaa, name, bearer, None).await;
            assert_eq!(status, failure, "{name}");
            assert!(body.get("destinationConfiguration").is_none(), "{name}");
        }
    }
    xsuaa.set_destination_failure(None);
    let (status, _) = find(&xsuaa, "no-auth", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(xsuaa.destination_lookups("no-auth"), 3);
}

#[tokio::test]
async fn a_configured_delay_holds_every_find_back() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let delay = std::time::Duration::from_millis(300);
    xsuaa.set_destination_delay(Some(delay));
    let started = tokio::time::Instant::now();
    let (status, _) = find(&xsuaa, "no-auth", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= delay);

    // A client that gives up earlier sees its own timeout.
    let early = client(&xsuaa)
        .get(format!(
            "{}/destination-configuration/v1/destinations/no-auth",
            xsuaa.destination_url()
        ))
        .bearer_auth(&bearer)
        .timeout(std::time::Duration::from_millis(50))
        .send()
        .await;
    assert!(early.is_err_and(|err| err.is_timeout()));

    xsuaa.set_destination_delay(None);
    let started = tokio::time::Instant::now();
    let (status, _) = find(&xsuaa, "no-auth", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < delay);
}

#[tokio::test]
async fn password_and_saml_bearer_destinations_get_user_tokens() {
    let xsuaa = DevXsuaa::builder().start().await.unwrap();
    let destination_cc = destination_cc(&xsuaa).await;
    let (status, body) = find(&xsuaa, "password", Some(&destination_cc), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["destinationConfiguration"]["User"], "jane.doe");
    let auth = &body["authTokens"][0];
    assert_eq!(auth["type"], "Bearer");
    assert_eq!(auth["expires_in"], "3600");
    let value = auth["value"].as_str().unwrap();
    assert_eq!(
        auth["http_header"],
        json!({"key": "Authorization", "value": format!("Bearer {value}")})
    );
    let token = claims(value);
    assert_eq!(token["user_name"], "jane.doe");
    assert_eq!(token["cid"], "sb-backend!t1");
    assert_eq!(token["grant_type"], "password");

    // The token service knows only configured users with their password.
    for (user, password) in [("jane.doe", "wrong"), ("mallory", "secret")] {
        xsuaa.set_destination(
            "password",
            [
                ("URL", "https://backend.example.org"),
                ("ProxyType", "Internet"),
                ("Authentication", "OAuth2Password"),
                ("User", user),
                ("Password", password),
                ("clientId", "sb-backend!t1"),
            ],
        );
        let (status, body) = find(&xsuaa, "password", Some(&destination_cc), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["authTokens"][0]["error"].is_string(), "{user}: {body}");
        assert_eq!(body["authTokens"][0]["value"], "");
    }

    let destination_user = destination_user(&xsuaa).await;
    let (status, body) = find(&xsuaa, "saml-bearer", Some(&destination_user), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let auth = &body["authTokens"][0];
    assert_eq!(auth["http_header"]["key"], "Authorization");
    let token = claims(auth["value"].as_str().unwrap());
    assert_eq!(token["user_name"], "jane.doe");
    assert_eq!(token["cid"], "sb-backend!t1");
    let (_, body) = find(&xsuaa, "saml-bearer", Some(&destination_cc), None).await;
    assert!(body["authTokens"][0]["error"].is_string(), "{body}");
}

#[tokio::test]
async fn on_premise_destinations_answer_as_the_service_does() {
    let xsuaa = DevXsuaa::builder()
        .user(xsuaa_dev::User::new("max.mustermann"))
        .start()
        .await
        .unwrap();
    let bearer = destination_cc(&xsuaa).await;
    let (status, body) = find(&xsuaa, "technical-user", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["destinationConfiguration"]["ProxyType"], "OnPremise");
    assert_eq!(body["destinationConfiguration"]["URL"], "http://erp.internal:44300");
    let auth = &body["authTokens"][0];
    assert_eq!(auth["type"], "Bearer");
    let value = auth["value"].as_str().unwrap();
    assert_eq!(
        auth["http_header"],
        json!({"key": "SAP-Connectivity-Technical-Authentication", "value": format!("Bearer {value}")})
    );
    let token = claims(value);
    assert_eq!(token["cid"], "sb-backend!t1");
    assert_eq!(token["grant_type"], "client_credentials");
    assert!(token.get("user_name").is_none());

    for name in ["principal-propagation", "on-premise"] {
        let (status, body) = find(&xsuaa, name, Some(&bearer), None).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(body["destinationConfiguration"]["CloudConnectorLocationId"], "loc1");
        assert!(body.get("authTokens").is_none(), "{name}: {body}");
    }
    // The default password destination names the first configured user.
    let (_, body) = find(&xsuaa, "password", Some(&bearer), None).await;
    assert_eq!(body["destinationConfiguration"]["User"], "max.mustermann");
    assert_eq!(
        claims(body["authTokens"][0]["value"].as_str().unwrap())["user_name"],
        "max.mustermann"
    );
}
