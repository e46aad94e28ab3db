//! `http:` call a webhook. Never retried and never sent twice: a receiver may act on a call
//! whose answer was lost, so such a call's outcome is unknown and counts as acted.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::duration::HumanDuration;
use crate::engine::HttpCall;
use crate::load::{Checker, Lit};
use crate::spec::Arg;

const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Call a webhook. No shell: the request is built from these fields only.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    pub url: Arg,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Arg>,
    /// JSON body; strings in it may be templated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_yaml::Value>,
    /// Statuses that count as success; any 2xx when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

fn default_method() -> String {
    "POST".into()
}

/// The call, rendered; `expect_status` as in the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpPlan {
    pub call: HttpCall,
    #[serde(default)]
    pub expect_status: Option<Vec<u16>>,
}

#[async_trait]
impl Action for HttpStep {
    const KEY: &'static str = "http";
    const MUTATING: bool = true;
    type Plan = HttpPlan;
    const EXAMPLE: &'static str = "{url: 'http://127.0.0.1:9/hook', body: {run: '{{ run.id }}'}}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.arg(&format!("{at}.url"), &self.url, Lit::Url);
        if !HTTP_METHODS.contains(&self.method.to_uppercase().as_str()) {
            c.err(format!("{at}.method"), format!("`{}` is not one of {}", self.method, HTTP_METHODS.join(", ")));
        }
        for (k, v) in &self.headers {
            let token = !k.is_empty() && k.chars().all(|ch| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch));
            if !token {
                c.err(format!("{at}.headers.{k}"), format!("`{k}` is not a valid header name"));
            } else if k.eq_ignore_ascii_case("idempotency-key") {
                c.err(format!("{at}.headers.{k}"), "Warden sets `Idempotency-Key` itself (run-<id>-step-<n>)");
            }
            c.step_template(&format!("{at}.headers.{k}"), v.as_str());
        }
        if let Some(b) = &self.body {
            c.tree(&format!("{at}.body"), b);
        }
        if let Some(codes) = &self.expect_status {
            if codes.is_empty() {
                c.err(format!("{at}.expect_status"), "must list at least one status (or be left out: any 2xx)");
            }
            for (i, code) in codes.iter().enumerate() {
                if !(100..=599).contains(code) {
                    c.err(format!("{at}.expect_status[{i}]"), format!("{code} is not an HTTP status (100..=599)"));
                }
            }
        }
        if let Some(t) = self.timeout {
            c.positive(&format!("{at}.timeout"), t.get());
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<HttpPlan>, StepError> {
        let url = cx.render(self.url.as_str())?;
        let mut headers = BTreeMap::new();
        for (k, v) in &self.headers {
            headers.insert(k.clone(), cx.render(v.as_str())?);
        }
        let body = match &self.body {
            Some(b) => Some(cx.render_tree(b)?),
            None => None,
        };
        let call = HttpCall {
            method: self.method.to_uppercase(),
            url,
            headers,
            body,
            timeout_secs: self.timeout.map(|t| t.get().as_secs_f64()).unwrap_or(10.0),
        };
        Ok(Planned::Request(HttpPlan { call, expect_status: self.expect_status.clone() }))
    }

    async fn apply(plan: &HttpPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let webhook = cx.webhook.ok_or_else(|| StepError::Failed("no HTTP client is configured".into()))?;
        let mut call = plan.call.clone();
        call.headers.insert("Idempotency-Key".into(), cx.key.to_string());
        if cx.dry_run() {
            return Ok(Sent::Done(json!({"summary": format!("would call {} {} (dry-run)", call.method, call.url)})));
        }
        // Never retried: a receiver may act on a call whose answer was lost.
        let reply = webhook.call(&call).await.map_err(|e| {
            if e.may_have_applied() {
                StepError::Unknown(format!(
                    "{} {}: {}; the call may have reached the receiver, so it is not sent again",
                    call.method, call.url, e.message
                ))
            } else {
                StepError::Failed(format!("{} {}: {}", call.method, call.url, e.message))
            }
        })?;
        let ok = match &plan.expect_status {
            Some(list) => list.contains(&reply.status),
            None => (200..300).contains(&reply.status),
        };
        let body: String = reply.body.chars().take(2000).collect();
        if !ok && reply.status >= 500 {
            // A server error says nothing about what the receiver did.
            return Err(StepError::Unknown(format!(
                "{} {} answered {}: {body}; it may have acted, so it is not sent again",
                call.method, call.url, reply.status
            )));
        }
        if !ok {
            return Err(StepError::Failed(format!("{} {} answered {}: {body}", call.method, call.url, reply.status)));
        }
        Ok(Sent::Done(
            json!({"status": reply.status, "body": body, "summary": format!("called {} {} ({})", call.method, call.url, reply.status)}),
        ))
    }

    fn interrupted(plan: &HttpPlan) -> Option<&'static str> {
        let _ = plan;
        // A webhook call is not idempotent for every receiver: it is not sent a second time.
        Some("the webhook call was interrupted; its outcome is unknown and it is not sent again")
    }

    fn describe(plan: &HttpPlan) -> String {
        format!("{} {}", plan.call.method, plan.call.url)
    }
}
