//! The route table: every method and path the control API serves, in one declarative list,
//! and the matching of a request line against it.
//!
//! It owns the list that the API document (`api/openapi.json`) is checked against. It never
//! decides who may call a route (the handler's [`Authorized`](super::authz::Authorized)
//! parameter does) nor what the route does.

use http::Method;

/// What a route does; the handlers dispatch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Health,
    Whoami,
    ListCredentials,
    AddCredential,
    ShowCredential,
    UpdateCredential,
    DeleteCredential,
    CredentialCertificate,
    ListGroups,
    CreateGroup,
    ShowGroup,
    UpdateGroup,
    DeleteGroup,
    SyncGroup,
    RotateGroup,
    DeleteGroupCloud,
    PurgeGroup,
    RecoverGroup,
    CheckGroup,
    ListKeys,
    CreateKey,
    ShowKey,
    DeleteKey,
    KeyPublic,
    SyncKey,
    ExportByok,
    RecordImport,
    ListApprovals,
    ShowApproval,
    Approve,
    Reject,
    ByokFile,
    ListJobs,
    ShowJob,
    CancelJob,
    QueryLogs,
    ExportLogs,
    VerifyLogs,
    GetDesignated,
    SetDesignated,
    CreateBackup,
}

impl Op {
    /// Whether the route reads a JSON body. Every other route takes none: its body must be
    /// empty or an empty JSON object (`{}`), so nothing a client sends is silently ignored.
    pub const fn takes_body(self) -> bool {
        matches!(
            self,
            Op::AddCredential
                | Op::UpdateCredential
                | Op::CreateGroup
                | Op::UpdateGroup
                | Op::CreateKey
                | Op::ExportByok
                | Op::RecordImport
                | Op::SetDesignated
        )
    }
}

impl Op {
    /// Whether the request body may carry a client secret. The connection is closed after
    /// answering such a request, so no TLS or HTTP read buffer of a kept-alive connection holds
    /// the secret until the client goes away (freed buffers are wiped by the allocator).
    pub const fn carries_secret(self) -> bool {
        matches!(self, Op::AddCredential | Op::UpdateCredential)
    }
}

/// One route: method, path template (`{name}` is a parameter), and its operation.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub op: Op,
}

const fn r(method: Method, path: &'static str, op: Op) -> Route {
    Route { method, path, op }
}

/// Every route of the control API.
pub const ROUTES: &[Route] = &[
    r(Method::GET, "/v1/health", Op::Health),
    r(Method::GET, "/v1/whoami", Op::Whoami),
    r(Method::GET, "/v1/credentials", Op::ListCredentials),
    r(Method::POST, "/v1/credentials", Op::AddCredential),
    r(
        Method::GET,
        "/v1/credentials/{credential}",
        Op::ShowCredential,
    ),
    r(
        Method::PATCH,
        "/v1/credentials/{credential}",
        Op::UpdateCredential,
    ),
    r(
        Method::DELETE,
        "/v1/credentials/{credential}",
        Op::DeleteCredential,
    ),
    r(
        Method::GET,
        "/v1/credentials/{credential}/certificate",
        Op::CredentialCertificate,
    ),
    r(Method::GET, "/v1/groups", Op::ListGroups),
    r(Method::POST, "/v1/groups", Op::CreateGroup),
    r(Method::GET, "/v1/groups/{group}", Op::ShowGroup),
    r(Method::PATCH, "/v1/groups/{group}", Op::UpdateGroup),
    r(Method::DELETE, "/v1/groups/{group}", Op::DeleteGroup),
    r(Method::POST, "/v1/groups/{group}/sync", Op::SyncGroup),
    r(Method::POST, "/v1/groups/{group}/rotate", Op::RotateGroup),
    r(
        Method::POST,
        "/v1/groups/{group}/delete-cloud",
        Op::DeleteGroupCloud,
    ),
    r(Method::POST, "/v1/groups/{group}/purge", Op::PurgeGroup),
    r(Method::POST, "/v1/groups/{group}/recover", Op::RecoverGroup),
    r(Method::POST, "/v1/groups/{group}/check", Op::CheckGroup),
    r(Method::GET, "/v1/groups/{group}/keys", Op::ListKeys),
    r(Method::POST, "/v1/groups/{group}/keys", Op::CreateKey),
    r(Method::GET, "/v1/groups/{group}/keys/{key}", Op::ShowKey),
    r(
        Method::DELETE,
        "/v1/groups/{group}/keys/{key}",
        Op::DeleteKey,
    ),
    r(
        Method::GET,
        "/v1/groups/{group}/keys/{key}/public",
        Op::KeyPublic,
    ),
    r(
        Method::POST,
        "/v1/groups/{group}/keys/{key}/sync",
        Op::SyncKey,
    ),
    r(
        Method::POST,
        "/v1/groups/{group}/keys/{key}/export-byok",
        Op::ExportByok,
    ),
    r(
        Method::POST,
        "/v1/groups/{group}/keys/{key}/record-import",
        Op::RecordImport,
    ),
    r(Method::GET, "/v1/approvals", Op::ListApprovals),
    r(Method::GET, "/v1/approvals/{approval}", Op::ShowApproval),
    r(
        Method::POST,
        "/v1/approvals/{approval}/approve",
        Op::Approve,
    ),
    r(Method::POST, "/v1/approvals/{approval}/reject", Op::Reject),
    r(
        Method::GET,
        "/v1/approvals/{approval}/byok-file",
        Op::ByokFile,
    ),
    r(Method::GET, "/v1/jobs", Op::ListJobs),
    r(Method::GET, "/v1/jobs/{job}", Op::ShowJob),
    r(Method::POST, "/v1/jobs/{job}/cancel", Op::CancelJob),
    r(Method::GET, "/v1/logs", Op::QueryLogs),
    r(Method::GET, "/v1/logs/export", Op::ExportLogs),
    r(Method::GET, "/v1/logs/verify", Op::VerifyLogs),
    r(Method::GET, "/v1/config/designated", Op::GetDesignated),
    r(Method::PUT, "/v1/config/designated", Op::SetDesignated),
    r(Method::POST, "/v1/backup", Op::CreateBackup),
];

/// The path parameters of a matched route, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn new(pairs: Vec<(&'static str, String)>) -> Self {
        Self(pairs)
    }

    /// The parameter's raw text ("" if the template has no such parameter).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The outcome of matching a request line.
#[derive(Debug)]
pub enum Matched {
    Found(&'static Route, Params),
    /// The path exists with other methods.
    WrongMethod(Vec<Method>),
    NotFound,
}

/// Matches a method and path (without the query) against [`ROUTES`].
pub fn matching(method: &Method, path: &str) -> Matched {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_template(route.path, path) {
            if route.method == method {
                return Matched::Found(route, params);
            }
            allowed.push(route.method.clone());
        }
    }
    if allowed.is_empty() {
        Matched::NotFound
    } else {
        Matched::WrongMethod(allowed)
    }
}

fn match_template(template: &'static str, path: &str) -> Option<Params> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut params = Vec::new();
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(Params(params)),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    params.push((name, ps.to_owned()));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_exactly_and_capture_parameters() {
        let Matched::Found(route, params) = matching(&Method::GET, "/v1/groups/g1/keys/k1") else {
            panic!("no match")
        };
        assert_eq!(route.op, Op::ShowKey);
        assert_eq!(params.get("group"), "g1");
        assert_eq!(params.get("key"), "k1");
        assert!(matches!(
            matching(&Method::GET, "/v1/groups/g1/keys/"),
            Matched::NotFound
        ));
        assert!(matches!(
            matching(&Method::GET, "/v1/groups//keys"),
            Matched::NotFound
        ));
        assert!(matches!(
            matching(&Method::PUT, "/v1/groups"),
            Matched::WrongMethod(_)
        ));
        assert!(matches!(
            matching(&Method::GET, "/v2/groups"),
            Matched::NotFound
        ));
    }

    #[test]
    fn no_two_routes_share_a_method_and_path() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
