//! The SaaS registry's subscription callbacks, answered before CORS, login and routing as the
//! reference does: no route of xs-app.json is needed for them.

use http::request::Parts;
use http::Method;
use http_body_util::BodyExt;

use super::{Answer, RequestCtx};
use crate::body::BoxError;
use crate::error::GatewayError;
use crate::saas::{Callback, Error, MAX_BODY};

/// True when the request is for a callback: one check of the path, and only with a
/// `saas-registry` binding.
pub(super) fn is_callback(parts: &Parts, ctx: &RequestCtx<'_>) -> bool {
    ctx.state
        .subscriptions
        .as_ref()
        .is_some_and(|subscriptions| subscriptions.callback(parts.uri.path()).is_some())
}

/// Answers a callback: the caller's token first (whatever the path and method), then the
/// dependencies, a subscription or an unsubscription.
pub(super) async fn answer<B>(parts: Parts, body: B, ctx: &RequestCtx<'_>) -> Answer
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let subscriptions = ctx.state.subscriptions.as_ref().ok_or(Error::NotFound)?;
    let callback = subscriptions.callback(parts.uri.path()).ok_or(Error::NotFound)?;
    if let Err(error) = subscriptions.authorize(&parts.headers).await {
        let correlation_id = ctx.correlation_id.to_str().unwrap_or("-");
        tracing::warn!(correlation_id, path = parts.uri.path(), reason = %error, "subscription callback refused");
        return Err(error.into());
    }
    match (callback, &parts.method) {
        (Callback::Dependencies, &Method::GET) => Ok(subscriptions.dependencies()),
        (Callback::Dependencies, _) => Err(Error::MethodNotAllowed { allow: "GET" }.into()),
        (Callback::Tenant(tenant_id), &Method::PUT) => {
            let tenancy = ctx.snapshot.config.tenancy.as_ref().ok_or(Error::HostWithoutTenant)?;
            let origin = ctx
                .snapshot
                .config
                .own_origin(&parts.headers, ctx.connection.scheme)
                .map_err(|_| Error::HostWithoutTenant)?;
            let body = read_body(&parts, body).await?;
            Ok(subscriptions.subscribe(tenancy, &origin, tenant_id, &body)?)
        }
        (Callback::Tenant(tenant_id), &Method::DELETE) => {
            let body = read_body(&parts, body).await?;
            match crate::saas::Subscriptions::unsubscribed_subdomain(&body) {
                Some(subdomain) => {
                    // Every instance sees the end through the session store; the caches here go
                    // at once, the other instances' with their tokens.
                    if let Some(auth) = &ctx.state.auth {
                        auth.end_tenant(&subdomain).await?;
                    }
                    if let Some(destinations) = &ctx.state.destinations {
                        destinations.forget_tenant(&subdomain);
                    }
                }
                None => tracing::warn!(
                    path = parts.uri.path(),
                    "unsubscription without a subscribedSubdomain: the tenant's sessions end with their idle timeout"
                ),
            }
            Ok(subscriptions.unsubscribe(tenant_id))
        }
        (Callback::Tenant(_), _) => Err(Error::MethodNotAllowed { allow: "PUT, DELETE" }.into()),
        (Callback::Unknown, _) => Err(Error::NotFound.into()),
    }
}

/// The subscription's body, at most [`MAX_BODY`] bytes.
async fn read_body<B>(parts: &Parts, body: B) -> Result<bytes::Bytes, GatewayError>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| crate::http1::content_length(value.as_bytes()));
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(Error::BodyTooLarge.into());
    }
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(Error::BodyTooLarge.into()),
        Err(_) => Err(Error::BodyUnreadable.into()),
    }
}
