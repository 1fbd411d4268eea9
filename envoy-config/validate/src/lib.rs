//! Checks the Envoy bootstraps in `envoy-config/` without Envoy: against Envoy's own API
//! definitions, then against the cross-references Envoy (and keel's filters) rely on.
//!
//! 1. **Schema.** Envoy's API — data-plane-api and its imports (xds, googleapis,
//!    protoc-gen-validate, cel-spec, opentelemetry, client_model) — as the `envoy-types` crate
//!    ships it: the `.proto` files under `proto/` and the `FileDescriptorSet` that protoc made of
//!    them (`src/generated/types.bin`), read into a `prost-reflect` descriptor pool. The YAML is
//!    read as JSON values and deserialized into a dynamic `envoy.config.bootstrap.v3.Bootstrap`,
//!    following the protobuf JSON mapping as Envoy does: unknown fields are refused, every field
//!    must have its type (a string for a `Duration`, a known name for an enum, …), and every
//!    `@type` of an `Any` must name a message of the pool, whose fields are checked in turn.
//!    Errors name the path of the field (`static_resources.clusters[0].connect_timout`).
//!    (`protox`, a protobuf compiler in Rust, would compile the `.proto` files at test time, but
//!    0.10 refuses five of them — the dynamic_forward_proxy ones — because it resolves a name
//!    against a package that protoc hides from files that do not import it.)
//! 2. **Cross-references** ([`cross_references`]), on the parsed message: listener, cluster and
//!    filter names unique; every route's cluster defined; the router the last HTTP filter; the
//!    stateful_session filter after the wasm filters and reading the sticky filter's header; the
//!    wasm filters' plugin configurations JSON in a `StringValue`, their `.wasm` files under
//!    `target/filters/`, their `routes` the endpoints of the route's cluster, the session filter's
//!    `store_upstream` a defined cluster.
//! 3. **protoc-gen-validate rules** ([`validate_rules`]) that Envoy enforces on top of the
//!    schema, read from the descriptors' `validate.rules` options, for the common kinds: required
//!    messages, durations and oneofs; string lengths; repeated and map sizes; number, wrapper and
//!    duration bounds.
//!
//! What is not checked: the other validate rules (patterns, `well_known_regex`, `in`/`not_in`,
//! prefixes), the checks Envoy's extensions make in code, and whether the named extensions are
//! compiled into a given Envoy build (the official builds carry every extension used here).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, ReflectMessage, Value};

/// The `envoy-types` release whose `proto/` directory holds the API definitions.
pub const ENVOY_TYPES_VERSION: &str = "0.7.7";

/// The type URL prefix Envoy's `@type`s carry.
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// The keel filters by `.wasm` file stem.
pub const KEEL_FILTERS: &[&str] = &["sticky", "session", "route_suffix"];

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Where the built filters are: `KEEL_FILTERS_DIR`, else `<workspace>/target/filters` (the
/// directory the bootstraps name, relative to Envoy's working directory, the repository root).
pub fn filters_dir() -> PathBuf {
    match std::env::var_os("KEEL_FILTERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target").join("filters"),
    }
}

/// The `proto/` directory of `envoy-types`: `KEEL_ENVOY_PROTO_DIR` when set, else found with
/// `cargo metadata` (which downloads the package when it is not there yet).
pub fn proto_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("KEEL_ENVOY_PROTO_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let manifest = workspace_root().join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|err| format!("cannot run cargo metadata: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|err| format!("cargo metadata printed no JSON: {err}"))?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "envoy-types" && p["version"] == ENVOY_TYPES_VERSION)
        .ok_or_else(|| format!("envoy-types {ENVOY_TYPES_VERSION} is not in cargo metadata"))?;
    let manifest_path = package["manifest_path"]
        .as_str()
        .ok_or("envoy-types has no manifest_path")?;
    let dir = Path::new(manifest_path)
        .parent()
        .ok_or("envoy-types' manifest has no directory")?
        .join("proto");
    if dir.join("data-plane-api/envoy").is_dir() {
        Ok(dir)
    } else {
        Err(format!("{} holds no data-plane-api", dir.display()))
    }
}

/// Where `envoy-types` keeps the descriptor set of its protos, relative to `proto/`.
const DESCRIPTOR_SET: &str = "../src/generated/types.bin";

/// The descriptor pool of Envoy's API: the `FileDescriptorSet` that `envoy-types` generated with
/// `protoc` from the `.proto` files it ships (every file of data-plane-api it carries, with
/// their imports and their protoc-gen-validate options).
pub fn load_descriptor_set(proto_dir: &Path) -> Result<DescriptorPool, String> {
    let path = proto_dir.join(DESCRIPTOR_SET);
    let bytes =
        std::fs::read(&path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    DescriptorPool::decode(bytes.as_slice())
        .map_err(|err| format!("{} is no FileDescriptorSet: {err}", path.display()))
}

/// The descriptor pool of Envoy's API, loaded once per process.
pub fn descriptor_pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| load_descriptor_set(&proto_dir()?))
        .as_ref()
        .map_err(Clone::clone)
}

/// Reads a YAML file as a JSON value (what Envoy does with a `.yaml` bootstrap before the
/// protobuf JSON parser sees it).
pub fn read_yaml(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|err| format!("{}: not YAML: {err}", path.display()))
}

/// Deserializes `value` into the message `type_name` of `pool`: unknown fields and wrong types
/// refused, every `Any` resolved. The error names the field's path.
pub fn parse_message(
    pool: &DescriptorPool,
    type_name: &str,
    value: serde_json::Value,
) -> Result<DynamicMessage, String> {
    let desc = pool
        .get_message_by_name(type_name)
        .ok_or_else(|| format!("no message {type_name} in Envoy's API"))?;
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(desc, deserializer, &options)
        .map_err(|err| format!("{}: {err}", track.path()))
}

// --- protoc-gen-validate rules ----------------------------------------------------------------

/// The protoc-gen-validate rules Envoy enforces on top of the schema, for the kinds this checks:
/// required messages and oneofs, string lengths, repeated and map sizes, number and duration
/// bounds. Returns every violation, with the field's path.
pub fn validate_rules(pool: &DescriptorPool, msg: &DynamicMessage) -> Vec<String> {
    let mut problems = Vec::new();
    check_message(pool, msg, "", &mut problems);
    problems
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn bool_option(options: &DynamicMessage, ext: Option<prost_reflect::ExtensionDescriptor>) -> bool {
    match ext {
        Some(ext) if options.has_extension(&ext) => {
            matches!(options.get_extension(&ext).as_ref(), Value::Bool(true))
        }
        _ => false,
    }
}

fn check_message(pool: &DescriptorPool, msg: &DynamicMessage, path: &str, out: &mut Vec<String>) {
    let desc = msg.descriptor();
    if desc.full_name() == "google.protobuf.Any" {
        match any(pool, msg) {
            Ok((_, inner)) => check_message(pool, &inner, path, out),
            Err(err) => out.push(format!("{path}: {err}")),
        }
        return;
    }
    if bool_option(
        &desc.options(),
        pool.get_extension_by_name("validate.disabled"),
    ) {
        return;
    }
    for oneof in desc.oneofs() {
        if bool_option(
            &oneof.options(),
            pool.get_extension_by_name("validate.required"),
        ) && !oneof.fields().any(|f| msg.has_field(&f))
        {
            out.push(format!(
                "{}: one of {} is required",
                if path.is_empty() { "(top)" } else { path },
                oneof
                    .fields()
                    .map(|f| f.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let rules_ext = pool.get_extension_by_name("validate.rules");
    for field in desc.fields() {
        let at = join(path, field.name());
        let set = msg.has_field(&field);
        let rules = match &rules_ext {
            Some(ext) if field.options().has_extension(ext) => {
                match field.options().get_extension(ext).as_ref() {
                    Value::Message(m) => Some(m.clone()),
                    _ => None,
                }
            }
            _ => None,
        };
        let value = msg.get_field(&field).into_owned();
        // A member of a oneof is checked only when it is the one set (as protoc-gen-validate).
        if let Some(rules) = &rules
            && (set || field.containing_oneof().is_none())
        {
            check_rules(&at, &value, set, rules, out);
        }
        if !set {
            continue;
        }
        match value {
            Value::Message(m) => check_message(pool, &m, &at, out),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        check_message(pool, m, &format!("{at}[{i}]"), out);
                    }
                }
            }
            Value::Map(entries) => {
                for (key, item) in &entries {
                    if let Value::Message(m) = item {
                        check_message(pool, m, &format!("{at}[{key:?}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn sub(rules: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    message(rules, name)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::I32(n) => Some(f64::from(*n)),
        Value::U32(n) => Some(f64::from(*n)),
        Value::F32(n) => Some(f64::from(*n)),
        Value::F64(n) => Some(*n),
        // Precision beyond 2^53 does not matter for the bounds Envoy sets.
        #[allow(clippy::cast_precision_loss)]
        Value::I64(n) => Some(*n as f64),
        #[allow(clippy::cast_precision_loss)]
        Value::U64(n) => Some(*n as f64),
        _ => None,
    }
}

/// A `google.protobuf.Duration` (as a message value) in seconds.
fn duration_seconds(value: &Value) -> Option<f64> {
    let Value::Message(m) = value else {
        return None;
    };
    let seconds = number(&field(m, "seconds"))?;
    let nanos = number(&field(m, "nanos"))?;
    Some(seconds + nanos / 1e9)
}

/// Checks the numeric bounds (`gt`, `gte`, `lt`, `lte`, `const`) of `rules` against `actual`;
/// `bound` reads a bound's value.
fn bounds(
    at: &str,
    actual: f64,
    rules: &DynamicMessage,
    bound: impl Fn(&Value) -> Option<f64>,
    out: &mut Vec<String>,
) {
    let get = |name: &str| {
        rules
            .has_field_by_name(name)
            .then(|| bound(&field(rules, name)))
            .flatten()
    };
    let (gt, gte, lt, lte) = (get("gt"), get("gte"), get("lt"), get("lte"));
    let above = match (gt, gte) {
        (Some(b), _) => actual > b,
        (_, Some(b)) => actual >= b,
        _ => true,
    };
    let below = match (lt, lte) {
        (Some(b), _) => actual < b,
        (_, Some(b)) => actual <= b,
        _ => true,
    };
    // protoc-gen-validate: with the lower bound above the upper one, the range is exclusive.
    let lower = gt.or(gte);
    let upper = lt.or(lte);
    let ok = match (lower, upper) {
        (Some(l), Some(u)) if l > u => above || below,
        _ => above && below,
    };
    if !ok {
        let describe = |name: &str, b: Option<f64>| b.map(|b| format!("{name} {b}"));
        let limits: Vec<String> = [
            describe(">", gt),
            describe(">=", gte),
            describe("<", lt),
            describe("<=", lte),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.push(format!(
            "{at}: {actual} is out of range ({})",
            limits.join(", ")
        ));
    }
    if let Some(c) = get("const")
        && actual != c
    {
        out.push(format!("{at}: must be {c}"));
    }
}

fn check_rules(at: &str, value: &Value, set: bool, rules: &DynamicMessage, out: &mut Vec<String>) {
    // The rules of a wrapper field (`google.protobuf.UInt32Value`, …) apply to the wrapped value,
    // when there is one.
    let unwrapped;
    let value = match value {
        Value::Message(m)
            if m.descriptor().full_name().starts_with("google.protobuf.")
                && m.descriptor().full_name().ends_with("Value")
                && m.descriptor().fields().len() == 1 =>
        {
            if !set {
                return;
            }
            unwrapped = field(m, "value");
            &unwrapped
        }
        other => other,
    };
    if let Some(m) = sub(rules, "message")
        && matches!(field(&m, "required"), Value::Bool(true))
        && !set
    {
        out.push(format!("{at}: is required"));
    }
    let ignore_empty = |r: &DynamicMessage| {
        r.descriptor().get_field_by_name("ignore_empty").is_some()
            && matches!(field(r, "ignore_empty"), Value::Bool(true))
    };
    if let Some(r) = sub(rules, "string")
        && let Value::String(s) = value
        && !(s.is_empty() && ignore_empty(&r))
    {
        let chars = s.chars().count() as u64;
        let get = |name: &str| match (r.has_field_by_name(name), field(&r, name)) {
            (true, Value::U64(n)) => Some(n),
            _ => None,
        };
        if get("min_len").is_some_and(|n| chars < n)
            || get("min_bytes").is_some_and(|n| (s.len() as u64) < n)
        {
            out.push(format!("{at}: `{s}` is too short"));
        }
        if get("max_len").is_some_and(|n| chars > n)
            || get("max_bytes").is_some_and(|n| (s.len() as u64) > n)
        {
            out.push(format!("{at}: `{s}` is too long"));
        }
    }
    if let Some(r) = sub(rules, "repeated") {
        let len = match value {
            Value::List(items) => items.len() as u64,
            _ => 0,
        };
        if !(len == 0 && ignore_empty(&r)) {
            if let Value::U64(n) = field(&r, "min_items")
                && r.has_field_by_name("min_items")
                && len < n
            {
                out.push(format!("{at}: at least {n} item(s) required"));
            }
            if let Value::U64(n) = field(&r, "max_items")
                && r.has_field_by_name("max_items")
                && len > n
            {
                out.push(format!("{at}: at most {n} item(s)"));
            }
        }
    }
    if let Some(r) = sub(rules, "map")
        && let Value::U64(n) = field(&r, "min_pairs")
        && r.has_field_by_name("min_pairs")
    {
        let len = match value {
            Value::Map(m) => m.len() as u64,
            _ => 0,
        };
        if len < n {
            out.push(format!("{at}: at least {n} entr(ies) required"));
        }
    }
    for kind in ["int32", "int64", "uint32", "uint64", "double", "float"] {
        if let Some(r) = sub(rules, kind)
            && let Some(actual) = number(value)
            && !(actual == 0.0 && ignore_empty(&r))
        {
            bounds(at, actual, &r, number, out);
        }
    }
    if let Some(r) = sub(rules, "duration") {
        if matches!(field(&r, "required"), Value::Bool(true)) && !set {
            out.push(format!("{at}: is required"));
        }
        if set && let Some(actual) = duration_seconds(value) {
            bounds(at, actual, &r, duration_seconds, out);
        }
    }
}

/// Parses a bootstrap file into Envoy's `Bootstrap`.
pub fn parse_bootstrap(pool: &DescriptorPool, path: &Path) -> Result<DynamicMessage, String> {
    let value = read_yaml(path)?;
    parse_message(pool, "envoy.config.bootstrap.v3.Bootstrap", value)
        .map_err(|err| format!("{}: {err}", path.display()))
}

// --- walking a parsed message ---------------------------------------------------------------

fn field(msg: &DynamicMessage, name: &str) -> Value {
    match msg.get_field_by_name(name) {
        Some(value) => value.into_owned(),
        None => panic!("{} has no field {name}", msg.descriptor().full_name()),
    }
}

fn message(msg: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    if !msg.has_field_by_name(name) {
        return None;
    }
    match field(msg, name) {
        Value::Message(m) => Some(m),
        _ => None,
    }
}

fn messages(msg: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    match field(msg, name) {
        Value::List(items) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::Message(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn string(msg: &DynamicMessage, name: &str) -> String {
    match field(msg, name) {
        Value::String(s) => s,
        _ => String::new(),
    }
}

fn uint(msg: &DynamicMessage, name: &str) -> u32 {
    match field(msg, name) {
        Value::U32(n) => n,
        _ => 0,
    }
}

fn enum_name(msg: &DynamicMessage, name: &str) -> String {
    let Some(fd) = msg.descriptor().get_field_by_name(name) else {
        return String::new();
    };
    match (field(msg, name), fd.kind().as_enum()) {
        (Value::EnumNumber(n), Some(e)) => e
            .get_value(n)
            .map(|v| v.name().to_owned())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// An `Any` field's type name and its decoded message.
fn any(pool: &DescriptorPool, any: &DynamicMessage) -> Result<(String, DynamicMessage), String> {
    let url = string(any, "type_url");
    let type_name = url.strip_prefix(TYPE_URL_PREFIX).unwrap_or(&url).to_owned();
    let desc = pool
        .get_message_by_name(&type_name)
        .ok_or_else(|| format!("unknown @type {url}"))?;
    let bytes = match field(any, "value") {
        Value::Bytes(b) => b,
        _ => Default::default(),
    };
    let decoded = DynamicMessage::decode(desc, bytes).map_err(|err| err.to_string())?;
    Ok((type_name, decoded))
}

/// The `typed_config` of an extension (`name` + `typed_config`), decoded.
fn typed_config(
    pool: &DescriptorPool,
    ext: &DynamicMessage,
) -> Result<Option<(String, DynamicMessage)>, String> {
    match message(ext, "typed_config") {
        Some(config) => any(pool, &config).map(Some),
        None => Ok(None),
    }
}

/// One wasm HTTP filter of a bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmFilter {
    /// The HTTP filter's name in the chain.
    pub filter_name: String,
    /// The plugin's name (`config.name`).
    pub plugin_name: String,
    /// `config.root_id`.
    pub root_id: String,
    /// `config.vm_config.vm_id`.
    pub vm_id: String,
    /// `config.vm_config.runtime`.
    pub runtime: String,
    /// `config.vm_config.code.local.filename`, as written.
    pub filename: String,
    /// The `@type` of `config.configuration`.
    pub configuration_type: String,
    /// The plugin configuration as the filter receives it (the `StringValue`'s text).
    pub configuration: String,
    /// `config.failure_policy`.
    pub failure_policy: String,
}

impl WasmFilter {
    /// The keel filter this is, by file stem (`sticky`, `session`, `route_suffix`), if any.
    pub fn keel_filter(&self) -> Option<&'static str> {
        let stem = Path::new(&self.filename).file_stem()?.to_str()?;
        KEEL_FILTERS.iter().copied().find(|f| *f == stem)
    }
}

/// An HTTP connection manager of a bootstrap, as far as the checks need it.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    /// The listener it belongs to.
    pub listener: String,
    /// The HTTP filters in order: name and the `@type` of their configuration.
    pub http_filters: Vec<(String, String)>,
    /// The wasm filters among them.
    pub wasm_filters: Vec<WasmFilter>,
    /// The header named by a header-based stateful_session filter, if there is one.
    pub stateful_session_header: Option<String>,
    /// `(route name or match, cluster)` for every route.
    pub route_clusters: Vec<(String, String)>,
}

/// What the checks read from a bootstrap.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Listener names in order.
    pub listeners: Vec<String>,
    /// Cluster names in order, with the `ip:port` of their static endpoints.
    pub clusters: Vec<(String, Vec<String>)>,
    /// The HTTP connection managers.
    pub managers: Vec<ConnectionManager>,
    /// The admin interface's address, if configured.
    pub admin_address: Option<String>,
}

fn socket_address(address: &DynamicMessage) -> Option<String> {
    let socket = message(address, "socket_address")?;
    let ip = string(&socket, "address");
    let port = uint(&socket, "port_value");
    Some(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

fn wasm_filter(
    pool: &DescriptorPool,
    filter_name: &str,
    wasm: &DynamicMessage,
) -> Result<WasmFilter, String> {
    let config = message(wasm, "config").ok_or_else(|| format!("{filter_name}: no config"))?;
    let vm = message(&config, "vm_config").ok_or_else(|| format!("{filter_name}: no vm_config"))?;
    let filename = message(&vm, "code")
        .and_then(|code| message(&code, "local"))
        .map(|local| string(&local, "filename"))
        .unwrap_or_default();
    let (configuration_type, configuration) = match message(&config, "configuration") {
        Some(c) => {
            let (type_name, decoded) = any(pool, &c)?;
            let text = if type_name == "google.protobuf.StringValue" {
                string(&decoded, "value")
            } else {
                String::new()
            };
            (type_name, text)
        }
        None => (String::new(), String::new()),
    };
    Ok(WasmFilter {
        filter_name: filter_name.to_owned(),
        plugin_name: string(&config, "name"),
        root_id: string(&config, "root_id"),
        vm_id: string(&vm, "vm_id"),
        runtime: string(&vm, "runtime"),
        filename,
        configuration_type,
        configuration,
        failure_policy: enum_name(&config, "failure_policy"),
    })
}

fn connection_manager(
    pool: &DescriptorPool,
    listener: &str,
    hcm: &DynamicMessage,
) -> Result<ConnectionManager, String> {
    let mut http_filters = Vec::new();
    let mut wasm_filters = Vec::new();
    let mut stateful_session_header = None;
    for filter in messages(hcm, "http_filters") {
        let name = string(&filter, "name");
        let (type_name, config) = match typed_config(pool, &filter)? {
            Some((t, c)) => (t, Some(c)),
            None => (String::new(), None),
        };
        match (type_name.as_str(), &config) {
            ("envoy.extensions.filters.http.wasm.v3.Wasm", Some(c)) => {
                wasm_filters.push(wasm_filter(pool, &name, c)?);
            }
            ("envoy.extensions.filters.http.stateful_session.v3.StatefulSession", Some(c)) => {
                if let Some(state) = message(c, "session_state")
                    && let Some((state_type, state)) = typed_config(pool, &state)?
                    && state_type
                        == "envoy.extensions.http.stateful_session.header.v3.HeaderBasedSessionState"
                {
                    stateful_session_header = Some(string(&state, "name"));
                }
            }
            _ => {}
        }
        http_filters.push((name, type_name));
    }
    let mut route_clusters = Vec::new();
    if let Some(config) = message(hcm, "route_config") {
        for vhost in messages(&config, "virtual_hosts") {
            for route in messages(&vhost, "routes") {
                let label = format!("{}/{}", string(&vhost, "name"), string(&route, "name"));
                if let Some(action) = message(&route, "route") {
                    let cluster = string(&action, "cluster");
                    if !cluster.is_empty() {
                        route_clusters.push((label.clone(), cluster));
                    }
                    if let Some(weighted) = message(&action, "weighted_clusters") {
                        for c in messages(&weighted, "clusters") {
                            route_clusters.push((label.clone(), string(&c, "name")));
                        }
                    }
                }
            }
        }
    }
    Ok(ConnectionManager {
        listener: listener.to_owned(),
        http_filters,
        wasm_filters,
        stateful_session_header,
        route_clusters,
    })
}

/// Reads what the checks need from a parsed bootstrap, decoding the `Any`s on the way.
pub fn summarize(pool: &DescriptorPool, bootstrap: &DynamicMessage) -> Result<Summary, String> {
    let mut summary = Summary {
        listeners: Vec::new(),
        clusters: Vec::new(),
        managers: Vec::new(),
        admin_address: message(bootstrap, "admin")
            .and_then(|admin| message(&admin, "address"))
            .and_then(|a| socket_address(&a)),
    };
    let Some(resources) = message(bootstrap, "static_resources") else {
        return Ok(summary);
    };
    for listener in messages(&resources, "listeners") {
        let name = string(&listener, "name");
        for chain in messages(&listener, "filter_chains") {
            for filter in messages(&chain, "filters") {
                if let Some((type_name, config)) = typed_config(pool, &filter)?
                    && type_name
                        == "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
                {
                    summary
                        .managers
                        .push(connection_manager(pool, &name, &config)?);
                }
            }
        }
        summary.listeners.push(name);
    }
    for cluster in messages(&resources, "clusters") {
        let mut endpoints = Vec::new();
        if let Some(assignment) = message(&cluster, "load_assignment") {
            for locality in messages(&assignment, "endpoints") {
                for lb in messages(&locality, "lb_endpoints") {
                    if let Some(address) = message(&lb, "endpoint")
                        .and_then(|e| message(&e, "address"))
                        .and_then(|a| socket_address(&a))
                    {
                        endpoints.push(address);
                    }
                }
            }
        }
        summary.clusters.push((string(&cluster, "name"), endpoints));
    }
    Ok(summary)
}

fn duplicates<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = BTreeSet::new();
    names.into_iter().filter(|n| !seen.insert(*n)).collect()
}

/// The `routes` of a keel plugin configuration, as `route → ip:port`.
fn plugin_routes(config: &serde_json::Value) -> Option<BTreeMap<String, String>> {
    let routes = config.get("routes")?.as_object()?;
    Some(
        routes
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
    )
}

/// The cross-references Envoy checks when it loads a bootstrap, and those keel's filters rely
/// on; every problem found, described.
pub fn cross_references(summary: &Summary) -> Vec<String> {
    let mut problems = Vec::new();
    for dup in duplicates(summary.listeners.iter().map(String::as_str)) {
        problems.push(format!("listener `{dup}` is defined twice"));
    }
    for dup in duplicates(summary.clusters.iter().map(|(n, _)| n.as_str())) {
        problems.push(format!("cluster `{dup}` is defined twice"));
    }
    if let Some(admin) = &summary.admin_address
        && !(admin.starts_with("127.") || admin.starts_with("[::1]"))
    {
        problems.push(format!(
            "the admin interface listens on {admin}, not loopback"
        ));
    }
    let cluster = |name: &str| summary.clusters.iter().find(|(n, _)| n == name);
    for hcm in &summary.managers {
        let at = format!("listener `{}`", hcm.listener);
        for dup in duplicates(hcm.http_filters.iter().map(|(n, _)| n.as_str())) {
            problems.push(format!("{at}: HTTP filter `{dup}` is named twice"));
        }
        for (route, name) in &hcm.route_clusters {
            if cluster(name).is_none() {
                problems.push(format!(
                    "{at}: route `{route}` names cluster `{name}`, which is not defined"
                ));
            }
        }
        match hcm.http_filters.last() {
            Some((_, t)) if t == "envoy.extensions.filters.http.router.v3.Router" => {}
            _ => problems.push(format!("{at}: the last HTTP filter is not the router")),
        }
        let routers = hcm
            .http_filters
            .iter()
            .filter(|(_, t)| t == "envoy.extensions.filters.http.router.v3.Router")
            .count();
        if routers > 1 {
            problems.push(format!("{at}: {routers} routers in the chain"));
        }
        wasm_cross_references(hcm, &at, &summary.clusters, &mut problems);
    }
    problems
}

fn wasm_cross_references(
    hcm: &ConnectionManager,
    at: &str,
    clusters: &[(String, Vec<String>)],
    problems: &mut Vec<String>,
) {
    let position = |type_name: &str| hcm.http_filters.iter().position(|(_, t)| t == type_name);
    let stateful = position("envoy.extensions.filters.http.stateful_session.v3.StatefulSession");
    let route_cluster_endpoints: BTreeSet<String> = hcm
        .route_clusters
        .iter()
        .filter_map(|(_, c)| clusters.iter().find(|(n, _)| n == c))
        .flat_map(|(_, endpoints)| endpoints.iter().cloned())
        .collect();
    for wasm in &hcm.wasm_filters {
        let at = format!("{at}: wasm filter `{}`", wasm.filter_name);
        if wasm.runtime != "envoy.wasm.runtime.v8" {
            problems.push(format!(
                "{at}: runtime `{}`, not envoy.wasm.runtime.v8 (the official builds' runtime)",
                wasm.runtime
            ));
        }
        let Some(keel) = wasm.keel_filter() else {
            continue;
        };
        match wasm.filename.strip_prefix("target/filters/") {
            Some(file) => {
                let path = filters_dir().join(file);
                if !path.is_file() {
                    problems.push(format!(
                        "{at}: {} does not exist (cargo xtask build-wasm writes it)",
                        path.display()
                    ));
                }
            }
            None => problems.push(format!(
                "{at}: `{}` is not under target/filters/, where cargo xtask build-wasm writes it",
                wasm.filename
            )),
        }
        if wasm.configuration_type != "google.protobuf.StringValue" {
            problems.push(format!(
                "{at}: the configuration is a `{}`, not a google.protobuf.StringValue holding JSON",
                wasm.configuration_type
            ));
            continue;
        }
        let config: serde_json::Value = match serde_json::from_str(&wasm.configuration) {
            Ok(c) => c,
            Err(err) => {
                problems.push(format!("{at}: the configuration is not JSON: {err}"));
                continue;
            }
        };
        if let Some(routes) = plugin_routes(&config) {
            for (route, address) in &routes {
                if !route_cluster_endpoints.contains(address) {
                    problems.push(format!(
                        "{at}: route `{route}` is {address}, which is no endpoint of the route's cluster"
                    ));
                }
            }
        }
        if keel == "sticky" && config.get("encoding").and_then(|e| e.as_str()) == Some("envoy_host")
        {
            let header = config
                .get("header")
                .and_then(|h| h.as_str())
                .unwrap_or("x-keel-route")
                .to_ascii_lowercase();
            match (&hcm.stateful_session_header, stateful) {
                (Some(read), Some(pos)) => {
                    if read.to_ascii_lowercase() != header {
                        problems.push(format!(
                            "{at}: sets `{header}` but stateful_session reads `{read}`"
                        ));
                    }
                    let sticky_pos = hcm
                        .http_filters
                        .iter()
                        .position(|(n, _)| *n == wasm.filter_name);
                    if sticky_pos.is_some_and(|p| p > pos) {
                        problems.push(format!("{at}: comes after stateful_session, which then never sees its header"));
                    }
                }
                _ => problems.push(format!(
                    "{at}: encoding envoy_host, but no header-based stateful_session filter reads it"
                )),
            }
        }
        if keel == "session" {
            let upstream = config
                .get("store_upstream")
                .and_then(|u| u.as_str())
                .unwrap_or("keel_store");
            if !clusters.iter().any(|(n, _)| n == upstream) {
                problems.push(format!(
                    "{at}: store_upstream `{upstream}` is not a cluster (dispatch_http_call would fail)"
                ));
            }
        }
    }
    // The routes of the keel filters must agree: they all describe the same backends.
    let mut seen: Option<(String, BTreeMap<String, String>)> = None;
    for wasm in &hcm.wasm_filters {
        let Ok(config) = serde_json::from_str::<serde_json::Value>(&wasm.configuration) else {
            continue;
        };
        let Some(routes) = plugin_routes(&config) else {
            continue;
        };
        match &seen {
            Some((first, first_routes)) if *first_routes != routes => problems.push(format!(
                "{at}: the routes of `{}` differ from those of `{first}`",
                wasm.filter_name
            )),
            Some(_) => {}
            None => seen = Some((wasm.filter_name.clone(), routes)),
        }
    }
}

/// Every check on one bootstrap file: the schema, then the cross-references.
pub fn check_file(path: &Path) -> Result<Summary, Vec<String>> {
    let pool = descriptor_pool().map_err(|e| vec![e])?;
    let bootstrap = parse_bootstrap(pool, path).map_err(|e| vec![e])?;
    let summary = summarize(pool, &bootstrap).map_err(|e| vec![e])?;
    let mut problems = validate_rules(pool, &bootstrap);
    problems.extend(cross_references(&summary));
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems
            .into_iter()
            .map(|p| format!("{}: {p}", path.display()))
            .collect())
    }
}
