//! The console in-process: sessions and cookies, CSRF, roles, escaping, bad input and an
//! approval through the same call as the API.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

use crate::api::server::router;
use crate::api::AppState;
use crate::app::assemble::NoSource;
use crate::pipeline::Pipeline;

fn pipeline(dir: &std::path::Path) -> Pipeline {
    std::fs::write(dir.join("ask-first.yaml"), crate::bench::console::PLAYBOOK).expect("playbook");
    let cfg = crate::config::parse_str(
        &format!("playbooks: {{ dir: '{}' }}\n", dir.display()),
        std::path::Path::new("t.yaml"),
    )
    .expect("config");
    Pipeline::new(
        Arc::new(cfg),
        Arc::new(crate::store::Store::open_in_memory().expect("store")),
        Arc::new(NoSource),
        None,
        Arc::new(crate::metrics::Metrics::new()),
        vec![],
        crate::timeline::Timeline::default(),
    )
}

struct App {
    router: Router,
    _dir: tempfile::TempDir,
}

fn app() -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = router(AppState {
        pipeline: Arc::new(pipeline(dir.path())),
        api_token: Some(Arc::from("op-token")),
        viewer_token: Some(Arc::from("view-token")),
        ready: Arc::new(AtomicBool::new(true)),
        slack: None,
    });
    App { router, _dir: dir }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn cookies(&self) -> Vec<String> {
        self.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    /// The value of `name="csrf" value="..."` in the page.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF field") + 19;
        self.body[at..].split('"').next().unwrap_or_default().to_string()
    }
}

async fn send(
    app: &App,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let body = match form {
        Some(f) => {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(f.to_string())
        }
        None => Body::empty(),
    };
    let resp = app.router.clone().oneshot(req.body(body).expect("request")).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20).await.expect("body");
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Logs in with `token` as `name`; the session cookie (`warden_session=...`).
async fn login(app: &App, token: &str, name: &str) -> String {
    let form = send(app, "GET", "/ui/login", None, None, &[]).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let login_cookie = form.cookies().into_iter().find(|c| c.starts_with("warden_login=")).expect("login cookie");
    let pair = login_cookie.split(';').next().unwrap_or_default().to_string();
    let body = format!("csrf={}&token={}&name={}", form.csrf(), enc(token), enc(name));
    let r = send(app, "POST", "/ui/login", Some(&pair), Some(&body), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let session = r.cookies().into_iter().find(|c| c.starts_with("warden_session=")).expect("session cookie");
    session.split(';').next().unwrap_or_default().to_string()
}

async fn csrf_of(app: &App, cookie: &str, page: &str) -> String {
    let r = send(app, "GET", page, Some(cookie), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.csrf()
}

async fn alert(app: &App, name: &str, summary: &str) {
    let body = serde_json::json!({
        "version": "4", "groupKey": "g", "status": "firing", "receiver": "w",
        "alerts": [{"status": "firing", "labels": {"alertname": name}, "annotations": {"summary": summary},
                    "startsAt": "2026-11-22T10:00:00Z"}]
    })
    .to_string();
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/alerts")
        .header("authorization", "Bearer op-token")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let r = app.router.clone().oneshot(req).await.expect("response");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_answer_has_the_security_headers_and_the_cookies_are_strict() {
    let app = app();
    let r = send(&app, "GET", "/ui/login", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_SECURITY_POLICY], super::CSP);
    assert!(super::CSP.contains("default-src 'none'") && super::CSP.contains("frame-ancestors 'none'"));
    assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
    assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap_or_default().starts_with("text/html"));
    let c = r.cookies().join("\n");
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/ui"), "{c}");
    assert!(!c.contains("Secure"), "plain HTTP: no Secure flag: {c}");
    let r = send(&app, "GET", "/ui/login", None, None, &[("x-forwarded-proto", "https")]).await;
    assert!(r.cookies().iter().all(|c| c.contains("; Secure")), "{:?}", r.cookies());
    // Static files with their types, and the same headers; unknown pages are 404 pages.
    let css = send(&app, "GET", "/ui/static/console.css", None, None, &[]).await;
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(css.headers[header::CONTENT_SECURITY_POLICY], super::CSP);
    let js = send(&app, "GET", "/ui/static/console.js", None, None, &[]).await;
    assert_eq!(js.headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    let nf = send(&app, "GET", "/ui/nope", None, None, &[]).await;
    assert_eq!(nf.status, StatusCode::NOT_FOUND);
    assert_eq!(nf.headers[header::CONTENT_SECURITY_POLICY], super::CSP);
    // No inline script or style anywhere: the CSP would block it.
    for page in [&r.body, &nf.body] {
        assert!(!page.contains("<script>") && !page.contains("style="), "{page}");
    }
}

/// Two replicas (two routers over one store): a session made on one works on the other,
/// and after a token rotation it no longer does; failed logins are limited per address.
#[tokio::test]
async fn sessions_live_in_the_store_and_failed_logins_are_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = AppState {
        pipeline: Arc::new(pipeline(dir.path())),
        api_token: Some(Arc::from("op-token")),
        viewer_token: Some(Arc::from("view-token")),
        ready: Arc::new(AtomicBool::new(true)),
        slack: None,
    };
    let first = App { router: router(state.clone()), _dir: tempfile::tempdir().expect("tempdir") };
    let second = App { router: router(state.clone()), _dir: tempfile::tempdir().expect("tempdir") };
    let session = login(&first, "op-token", "alice").await;
    let r = send(&second, "GET", "/ui/incidents", Some(&session), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "the other replica knows the session");
    assert!(r.body.contains("alice (operator)"), "{}", r.body);
    let rotated = App {
        router: router(AppState { api_token: Some(Arc::from("new-op-token")), ..state.clone() }),
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    let r = send(&rotated, "GET", "/ui/incidents", Some(&session), None, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "a rotated token ends the sessions it opened");

    let attempt = |token: &'static str| {
        let app = &first;
        async move {
            let form = send(app, "GET", "/ui/login", None, None, &[]).await;
            let pair = form.cookies()[0].split(';').next().unwrap_or_default().to_string();
            let body = format!("csrf={}&token={token}", form.csrf());
            send(app, "POST", "/ui/login", Some(&pair), Some(&body), &[]).await
        }
    };
    for _ in 0..super::session::MAX_FAILED_LOGINS {
        assert_eq!(attempt("guess").await.status, StatusCode::UNAUTHORIZED);
    }
    let r = attempt("op-token").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    let wait: u64 =
        r.headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()?.parse().ok()).expect("Retry-After");
    assert!(wait > 0 && wait <= super::session::FAILED_LOGIN_WINDOW.as_secs(), "{wait}");
    assert!(r.cookies().iter().all(|c| !c.starts_with("warden_session=")), "no session while limited");
    // The existing session is not affected.
    assert_eq!(send(&first, "GET", "/ui/incidents", Some(&session), None, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn login_needs_a_valid_token_and_the_forms_csrf_and_keeps_no_token_in_the_cookie() {
    let app = app();
    // Without a session: pages send to the login form, forms are refused.
    let r = send(&app, "GET", "/ui/incidents", None, None, &[]).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/ui/login"));
    let r = send(&app, "POST", "/ui/runs/1/approve", None, Some("comment=x"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = send(&app, "GET", "/ui/incidents", Some("warden_session=forged"), None, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    let form = send(&app, "GET", "/ui/login", None, None, &[]).await;
    let pair = form.cookies()[0].split(';').next().unwrap_or_default().to_string();
    // Wrong or missing CSRF value: refused before the token is looked at.
    let r = send(&app, "POST", "/ui/login", Some(&pair), Some("csrf=bad&token=op-token"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.cookies().iter().all(|c| !c.starts_with("warden_session=")));
    let r = send(&app, "POST", "/ui/login", None, Some(&format!("csrf={}&token=op-token", form.csrf())), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A wrong token: 401, the form again, the token not echoed.
    let r = send(&app, "POST", "/ui/login", Some(&pair), Some(&format!("csrf={}&token=guess", form.csrf())), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("not valid") && !r.body.contains("guess"), "{}", r.body);
    // A bad name.
    let r = send(
        &app,
        "POST",
        "/ui/login",
        Some(&pair),
        Some(&format!("csrf={}&token=op-token&name=%3Cb%3E", form.csrf())),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let session = login(&app, "op-token", "alice").await;
    assert!(!session.contains("op-token") && session.len() > "warden_session=".len() + 40, "{session}");
    let r = send(&app, "GET", "/ui/incidents", Some(&session), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("alice (operator)"), "{}", r.body);
    // Logging out ends the session on the server.
    let csrf = r.csrf();
    let r = send(&app, "POST", "/ui/logout", Some(&session), Some(&format!("csrf={csrf}")), &[]).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/ui/login"));
    assert!(r.cookies().iter().any(|c| c.starts_with("warden_session=;") && c.contains("Max-Age=0")));
    let r = send(&app, "GET", "/ui/incidents", Some(&session), None, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the old cookie no longer works");
}

#[tokio::test]
async fn an_operator_approves_with_a_comment_and_the_audit_names_them() {
    let app = app();
    alert(&app, "NeedsApproval", "please").await;
    let op = login(&app, "op-token", "alice").await;
    let r = send(&app, "GET", "/ui/approvals", Some(&op), None, &[]).await;
    assert!(r.body.contains("/ui/runs/1/approve") && r.body.contains("ask-first"), "{}", r.body);
    let csrf = csrf_of(&app, &op, "/ui/runs/1").await;

    // Bad input: no comment (kept nothing, said why), no CSRF, a wrong CSRF, unknown ids.
    let r = send(&app, "POST", "/ui/runs/1/approve", Some(&op), Some(&format!("csrf={csrf}&comment=+")), &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("needs a comment"), "{}", r.body);
    let r = send(&app, "POST", "/ui/runs/1/approve", Some(&op), Some("comment=ok"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    let r = send(&app, "POST", "/ui/runs/1/approve", Some(&op), Some("csrf=0000&comment=ok"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&app, "POST", "/ui/runs/99/approve", Some(&op), Some(&format!("csrf={csrf}&comment=ok")), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("no run 99"), "{}", r.body);
    let r = send(&app, "POST", "/ui/runs/abc/approve", Some(&op), Some(&format!("csrf={csrf}&comment=ok")), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "GET", "/ui/runs/1", Some(&op), None, &[]).await;
    assert!(r.body.contains("awaiting_approval"), "nothing was decided yet: {}", r.body);
    // The runs list pages by run id: one run, no older page; a bad page is refused.
    let r = send(&app, "GET", "/ui/runs", Some(&op), None, &[]).await;
    assert!(r.body.contains("/ui/runs/1") && !r.body.contains("older-runs"), "{}", r.body);
    let r = send(&app, "GET", "/ui/runs?before=2", Some(&op), None, &[]).await;
    assert!(r.body.contains("/ui/runs/1") && r.body.contains("newest"), "{}", r.body);
    let r = send(&app, "GET", "/ui/runs?before=1", Some(&op), None, &[]).await;
    assert!(r.body.contains("No runs"), "{}", r.body);
    let r = send(&app, "GET", "/ui/runs?before=x", Some(&op), None, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // A viewer reads the run but may not decide.
    let viewer = login(&app, "view-token", "").await;
    let r = send(&app, "GET", "/ui/runs/1", Some(&viewer), None, &[]).await;
    assert!(r.body.contains("Only an operator") && !r.body.contains("id=\"approve\""), "{}", r.body);
    let vcsrf = r.csrf();
    let r =
        send(&app, "POST", "/ui/runs/1/approve", Some(&viewer), Some(&format!("csrf={vcsrf}&comment=ok")), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("operator token"), "{}", r.body);

    // The approval.
    let r = send(&app, "POST", "/ui/runs/1/approve", Some(&op), Some(&format!("csrf={csrf}&comment=looks+right")), &[])
        .await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/ui/runs/1?ok=approved"), "{}", r.body);
    let r = send(&app, "GET", "/ui/runs/1?ok=approved", Some(&op), None, &[]).await;
    assert!(r.body.contains("Approved: the run goes on."), "{}", r.body);
    assert!(r.body.contains("succeeded"), "the run went on: {}", r.body);
    assert!(r.body.contains("approved by console&#x2f;alice"), "{}", r.body);
    let audit = {
        let req = Request::builder()
            .uri("/api/v1/runs/1")
            .header("authorization", "Bearer view-token")
            .body(Body::empty())
            .expect("request");
        let resp = app.router.clone().oneshot(req).await.expect("response");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
    };
    let decision = audit["audit"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["kind"] == "approval" && e["actor"] == "console/alice"))
        .cloned();
    assert!(decision.is_some(), "{audit}");
    // Deciding twice is refused with the reason, on the page.
    let r = send(&app, "POST", "/ui/runs/1/deny", Some(&op), Some(&format!("csrf={csrf}&comment=late")), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.body.contains("id=\"error\""), "{}", r.body);
}

#[tokio::test]
async fn store_text_is_escaped_and_incidents_are_acknowledged_resolved_and_paged() {
    let app = app();
    alert(&app, "<script>alert(1)</script>", "x").await;
    let op = login(&app, "op-token", "bob").await;
    let r = send(&app, "GET", "/ui/incidents", Some(&op), None, &[]).await;
    assert!(!r.body.contains("<script>alert(1)"), "{}", r.body);
    assert!(r.body.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{}", r.body);
    let r = send(&app, "GET", "/ui/incidents/1", Some(&op), None, &[]).await;
    assert!(!r.body.contains("<script>alert(1)"), "{}", r.body);
    let csrf = r.csrf();
    let r =
        send(&app, "POST", "/ui/incidents/1/ack", Some(&op), Some(&format!("csrf={csrf}&comment=%3Ci%3Emine")), &[])
            .await;
    assert_eq!(r.location(), "/ui/incidents/1?ok=acknowledged");
    let r = send(&app, "GET", "/ui/incidents/1", Some(&op), None, &[]).await;
    assert!(r.body.contains("acknowledged by console&#x2f;bob") && r.body.contains("&lt;i&gt;mine"), "{}", r.body);
    let r = send(&app, "POST", "/ui/incidents/1/ack", Some(&op), Some(&format!("csrf={csrf}")), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = send(&app, "POST", "/ui/incidents/1/resolve", Some(&op), Some(&format!("csrf={csrf}")), &[]).await;
    assert_eq!(r.location(), "/ui/incidents/1?ok=resolved");
    let r = send(&app, "POST", "/ui/incidents/7/resolve", Some(&op), Some(&format!("csrf={csrf}")), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "GET", "/ui/incidents?status=resolved", Some(&op), None, &[]).await;
    assert!(r.body.contains("/ui/incidents/1"), "{}", r.body);
    let r = send(&app, "GET", "/ui/incidents?status=open", Some(&op), None, &[]).await;
    assert!(r.body.contains("No incidents"), "{}", r.body);
    let r = send(&app, "GET", "/ui/incidents?status=maybe", Some(&op), None, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&app, "GET", "/ui/incidents?page=0", Some(&op), None, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Paging: 60 more incidents make two pages.
    for n in 0..60 {
        alert(&app, &format!("A{n}"), "x").await;
    }
    let r = send(&app, "GET", "/ui/incidents", Some(&op), None, &[]).await;
    assert_eq!(r.body.matches("<tr class=\"status-").count(), 50);
    assert!(r.body.contains("page=2"), "{}", r.body);
    let r = send(&app, "GET", "/ui/incidents?page=2", Some(&op), None, &[]).await;
    assert_eq!(r.body.matches("<tr class=\"status-").count(), 11);
    assert!(!r.body.contains("id=\"next-page\""));
}

#[tokio::test]
async fn silences_are_created_and_ended_and_bad_forms_keep_what_was_typed() {
    let app = app();
    let op = login(&app, "op-token", "carol").await;
    let csrf = csrf_of(&app, &op, "/ui/silences").await;
    let post = |form: String| {
        let (app, op) = (&app, op.clone());
        async move { send(app, "POST", "/ui/silences", Some(&op), Some(&form), &[]).await }
    };
    let r = post(format!("csrf={csrf}&matchers=just-a-word&duration=2h&comment=deploy+%3Cb%3E")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("id=\"error\""), "{}", r.body);
    assert!(r.body.contains("deploy &lt;b&gt;"), "the comment is kept: {}", r.body);
    let r = post(format!("csrf={csrf}&matchers=&duration=2h&comment=x")).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("at least one matcher"), "{}", r.body);
    let r = post(format!("csrf={csrf}&matchers=namespace%3Dshop&duration=soon&comment=x")).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("duration"), "{}", r.body);
    let r = post(format!("csrf={csrf}&matchers=namespace%3Dshop&duration=2h&comment=")).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("comment"), "{}", r.body);
    let r =
        post(format!("csrf={csrf}&matchers=namespace%3Dshop%0D%0Awatch%3D~%22a.*%22&duration=2h&comment=deploy")).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/ui/silences?ok=silenced"), "{}", r.body);
    let r = send(&app, "GET", "/ui/silences", Some(&op), None, &[]).await;
    assert!(r.body.contains("namespace=\"shop\"") || r.body.contains("namespace=&quot;shop&quot;"), "{}", r.body);
    assert!(r.body.contains("console&#x2f;carol"), "{}", r.body);
    let r = send(&app, "POST", "/ui/silences/1/expire", Some(&op), Some(&format!("csrf={csrf}")), &[]).await;
    assert_eq!(r.location(), "/ui/silences?ok=expired");
    let r = send(&app, "POST", "/ui/silences/1/expire", Some(&op), Some(&format!("csrf={csrf}")), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = send(&app, "POST", "/ui/silences/9/expire", Some(&op), Some(&format!("csrf={csrf}")), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, "GET", "/ui/silences?all=1", Some(&op), None, &[]).await;
    assert!(r.body.contains("expired"), "{}", r.body);
    // The other pages answer.
    for page in ["/ui/watches", "/ui/runs", "/ui/runs?status=failed", "/ui/approvals", "/ui/"] {
        let r = send(&app, "GET", page, Some(&op), None, &[]).await;
        assert!(r.status == StatusCode::OK || r.status == StatusCode::SEE_OTHER, "{page}: {}", r.status);
    }
    let r = send(&app, "GET", "/ui/runs?status=bogus", Some(&op), None, &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_follower_shows_pages_and_refuses_forms_naming_the_leader() {
    use crate::leadership::testing::Election;
    let dir = tempfile::tempdir().expect("tempdir");
    let election = Election::new();
    let (_a, _leader) = election.leader("warden-0").await;
    let (_b, follower) = election.follower("warden-1").await;
    let pipeline = pipeline(dir.path()).with_leadership(follower, std::time::Duration::from_secs(10));
    let app = App {
        router: router(AppState {
            pipeline: Arc::new(pipeline),
            api_token: Some(Arc::from("op-token")),
            viewer_token: None,
            ready: Arc::new(AtomicBool::new(true)),
            slack: None,
        }),
        _dir: dir,
    };
    let op = login(&app, "op-token", "dana").await;
    let csrf = csrf_of(&app, &op, "/ui/silences").await;
    let form = format!("csrf={csrf}&matchers=namespace%3Dshop&duration=2h&comment=deploy");
    let r = send(&app, "POST", "/ui/silences", Some(&op), Some(&form), &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("follower") && r.body.contains("warden-0"), "{}", r.body);
    let r = send(&app, "GET", "/ui/silences", Some(&op), None, &[]).await;
    assert!(r.body.contains("No silences"), "nothing was created: {}", r.body);
}
