//! The HTTP client nodes use with each other: a region's partial answer
//! (`POST /api/v1/internal/partial`), a database's schema (`GET /api/v1/internal/schema`),
//! a forwarded write (single-node forwarding), a
//! forwarded statement (deletes). It presents `auth.node_token`, never a client's token.

use std::collections::HashMap;
use std::time::Duration;

use crate::query::remote::{BoxFuture, NodeClient, ShowAnswer, WireAnswer, WireSchema};

/// HTTP client for other nodes (loopback or a private network; never follows redirects,
/// never uses a proxy from the environment).
#[derive(Clone)]
pub struct RemoteClient {
    client: reqwest::Client,
    token: Option<String>,
    /// The most bytes read of one answer (`query.max_memory`).
    max_answer: u64,
}

/// Header marking a request forwarded by another node (it must not be forwarded again).
pub const FORWARDED_HEADER: &str = "x-meridian-forwarded";

impl RemoteClient {
    /// `node_ca`: the PEM file of the CA(s) that sign the other nodes' certificates
    /// (`http.node_ca`); `https://` urls are trusted by it only (no system roots).
    /// `max_answer`: the most bytes read of one answer.
    pub fn new(
        token: Option<String>,
        timeout: Duration,
        node_ca: Option<&std::path::Path>,
        max_answer: u64,
    ) -> Result<RemoteClient, String> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .use_rustls_tls()
            .tls_built_in_root_certs(false);
        if let Some(path) = node_ca {
            let pem =
                std::fs::read(path).map_err(|e| format!("http.node_ca {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("http.node_ca {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "http.node_ca {}: no certificate in it",
                    path.display()
                ));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(RemoteClient {
            client,
            token,
            max_answer,
        })
    }

    /// Sends a request to another node, with the node token and the forwarded marker;
    /// the status and the whole body of the answer.
    async fn send(
        &self,
        rb: reqwest::RequestBuilder,
        endpoint: &str,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), String> {
        let rb = match &self.token {
            Some(t) => rb.header("Authorization", format!("Token {t}")),
            None => rb,
        };
        let resp = rb
            .header(FORWARDED_HEADER, "1")
            .send()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        let status = resp.status();
        // Read in chunks up to the bound: a misconfigured url must not fill memory.
        let mut resp = resp;
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{endpoint}: {e}"))? {
            if (body.len() + chunk.len()) as u64 > self.max_answer {
                return Err(format!(
                    "{endpoint}: {}: the answer passed {} bytes (query.max_memory); not read further",
                    crate::query::remote::NODE_ERROR,
                    self.max_answer
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body.freeze()))
    }

    /// Asks the nodes hosting `region` for its partial answer: the first of `urls`, then
    /// the next whenever every node asked so far has failed or `hedge` has passed without an
    /// answer; the first answer wins. A residency refusal is final (every node would give
    /// it).
    pub async fn partial_any_http(
        &self,
        urls: &[String],
        region: &str,
        params: &HashMap<String, String>,
        hedge: Duration,
    ) -> Result<WireAnswer, String> {
        first_answer(urls, hedge, |url| self.partial(url, region, params)).await
    }

    /// Asks the node at `url` for its partial answer for `region`.
    pub async fn partial(
        &self,
        url: &str,
        region: &str,
        params: &HashMap<String, String>,
    ) -> Result<WireAnswer, String> {
        let endpoint = format!("{}/api/v1/internal/partial", url.trim_end_matches('/'));
        let request = self
            .client
            .post(&endpoint)
            .query(&[("region", region)])
            .json(params);
        let (status, body) = self.send(request, &endpoint).await?;
        if status == reqwest::StatusCode::FORBIDDEN {
            // A residency refusal: its message as the region's node worded it.
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|j| j["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(crate::model::truncate(&msg, 1024).to_string());
        }
        if !status.is_success() {
            return Err(format!(
                "{endpoint} answered {status}: {}",
                crate::model::truncate(&String::from_utf8_lossy(&body), 512)
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{endpoint}: bad answer: {e}"))
    }

    /// The schema of `db` from the nodes at `urls`, asked as [`first_answer`] does.
    pub async fn schema_any_http(
        &self,
        urls: &[String],
        db: &str,
        hedge: Duration,
    ) -> Result<WireSchema, String> {
        first_answer(urls, hedge, |url| self.schema(url, db)).await
    }

    /// The schema of `db` from the node at `url`.
    pub async fn schema(&self, url: &str, db: &str) -> Result<WireSchema, String> {
        let endpoint = format!("{}/api/v1/internal/schema", url.trim_end_matches('/'));
        let request = self.client.get(&endpoint).query(&[("db", db)]);
        let (status, body) = self.send(request, &endpoint).await?;
        if !status.is_success() {
            return Err(format!("{endpoint} answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{endpoint}: bad answer: {e}"))
    }

    /// Forwards line protocol (timestamps in ns) for a region hosted at `url`; Ok once that
    /// node acknowledged it (durable there).
    pub async fn forward_write(
        &self,
        url: &str,
        db: &str,
        body: String,
        sync: bool,
    ) -> Result<(), (u16, String)> {
        let endpoint = format!("{}/api/v3/write_lp", url.trim_end_matches('/'));
        let no_sync = if sync { "false" } else { "true" };
        let request = self
            .client
            .post(&endpoint)
            .query(&[
                ("db", db),
                ("precision", "nanosecond"),
                ("accept_partial", "false"),
                ("no_sync", no_sync),
            ])
            .body(body);
        let (status, text) = self.send(request, &endpoint).await.map_err(|e| (503, e))?;
        if status.is_success() {
            return Ok(());
        }
        Err((
            status.as_u16(),
            format!(
                "{endpoint} answered {status}: {}",
                crate::model::truncate(&String::from_utf8_lossy(&text), 512)
            ),
        ))
    }

    /// A SHOW statement's answer from the nodes at `urls`, asked as [`first_answer`] does.
    pub async fn show_any_http(
        &self,
        urls: &[String],
        db: &str,
        q: &str,
        hedge: Duration,
    ) -> Result<ShowAnswer, String> {
        first_answer(urls, hedge, |url| self.show(url, db, q)).await
    }

    /// Runs a SHOW statement on the node at `url` (forwarded: for its own regions).
    pub async fn show(&self, url: &str, db: &str, q: &str) -> Result<ShowAnswer, String> {
        let endpoint = format!("{}/query", url.trim_end_matches('/'));
        let request = self.client.post(&endpoint).form(&[("db", db), ("q", q)]);
        let (status, body) = self.send(request, &endpoint).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{endpoint} answered {status}: not JSON: {e}"))?;
        let result = &v["results"][0];
        if let Some(e) = result["error"].as_str().or(v["error"].as_str()) {
            // The node is up and refused the statement: not a node to leave out.
            return Err(format!(
                "{endpoint}: {}: {e}",
                crate::query::remote::NODE_ERROR
            ));
        }
        if !status.is_success() {
            return Err(format!("{endpoint} answered {status}"));
        }
        let text = |c: &serde_json::Value| match c {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        let mut out = Vec::new();
        for s in result["series"].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or_default().to_string();
            let columns = s["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let rows = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r.as_array().into_iter().flatten().map(text).collect())
                .collect();
            out.push((name, columns, rows));
        }
        Ok(out)
    }

    /// Runs one InfluxQL statement (a delete) on the node at `url`, for the regions that
    /// node hosts; Ok once it answered without an error.
    pub async fn forward_statement_http(&self, url: &str, db: &str, q: &str) -> Result<(), String> {
        let endpoint = format!("{}/query", url.trim_end_matches('/'));
        let request = self.client.post(&endpoint).form(&[("db", db), ("q", q)]);
        let (status, body) = self.send(request, &endpoint).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let error = v["results"][0]["error"].as_str().or(v["error"].as_str());
        match (status.is_success(), error) {
            (true, None) => Ok(()),
            (_, Some(e)) => Err(format!("{endpoint}: {e}")),
            (false, None) => Err(format!("{endpoint} answered {status}")),
        }
    }
}

/// Asks the nodes at `urls` with `ask`: the first, then the next whenever every node asked
/// so far has failed or `hedge` has passed without an answer; the first answer wins. A
/// residency refusal is final (every node would give it).
async fn first_answer<'a, T, F, Fut>(
    urls: &'a [String],
    hedge: Duration,
    ask: F,
) -> Result<T, String>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    use futures::StreamExt;
    let mut asking = futures::stream::FuturesUnordered::new();
    let mut next = 0;
    let mut errors = Vec::new();
    loop {
        if next < urls.len() && (asking.is_empty() || next == 0) {
            asking.push(ask(&urls[next]));
            next += 1;
        }
        let wait = tokio::time::sleep(hedge);
        tokio::select! {
            done = asking.next() => match done {
                Some(Ok(answer)) => return Ok(answer),
                Some(Err(e)) if e.contains(crate::query::EXPORT_REFUSED) => return Err(e),
                Some(Err(e)) => {
                    errors.push(e);
                    if asking.is_empty() && next >= urls.len() {
                        return Err(errors.join("; "));
                    }
                }
                None => return Err(errors.join("; ")),
            },
            _ = wait, if next < urls.len() => {
                asking.push(ask(&urls[next]));
                next += 1;
            }
        }
    }
}

impl NodeClient for RemoteClient {
    fn partial_any<'a>(
        &'a self,
        urls: &'a [String],
        region: &'a str,
        params: &'a HashMap<String, String>,
        hedge: Duration,
    ) -> BoxFuture<'a, Result<WireAnswer, String>> {
        Box::pin(self.partial_any_http(urls, region, params, hedge))
    }

    fn schema_any<'a>(
        &'a self,
        urls: &'a [String],
        db: &'a str,
        hedge: Duration,
    ) -> BoxFuture<'a, Result<WireSchema, String>> {
        Box::pin(self.schema_any_http(urls, db, hedge))
    }

    fn show_any<'a>(
        &'a self,
        urls: &'a [String],
        db: &'a str,
        q: &'a str,
        hedge: Duration,
    ) -> BoxFuture<'a, Result<ShowAnswer, String>> {
        Box::pin(self.show_any_http(urls, db, q, hedge))
    }

    fn forward_statement<'a>(
        &'a self,
        url: &'a str,
        db: &'a str,
        q: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.forward_statement_http(url, db, q))
    }
}
