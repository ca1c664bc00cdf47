//! RabbitMQ's list query parameters, applied by the host to typed rows (`rabbit_mgmt_util`'s
//! `augment_resources`, `sort_list` and `filter_and_paginate`): `sort` (a dotted key such as
//! `message_stats.publish_details.rate`) and `sort_reverse`, `page` / `page_size` with the `name`
//! filter (`use_regex`), and `columns`. Every list operation reads its [`Query`] from the `query`
//! object of its arguments (the request's query string, as the HTTP plugin got it) and answers
//! through [`Query::typed`] or [`Query::values`], so a page of 100 out of 10,000 queues builds the
//! JSON of 100 rows, not of 10,000.
//!
//! What RabbitMQ 3.10 does, and so does this:
//! - Only the lists RabbitMQ pages take `page` (queues, exchanges, vhosts, and connections and
//!   channels of the whole node); the others ignore it and answer the whole array.
//! - `name` filters only a paged request: a case-insensitive substring, or with
//!   `use_regex=true` a case-insensitive regular expression (PCRE syntax, as `re`).
//! - `sort` orders by that key, then by the list's own order (its default sort); a missing key
//!   counts as 0, and values compare in Erlang's term order (numbers before atoms such as
//!   `true`/`null`, before objects and arrays, before strings). `sort_reverse=true` reverses
//!   the sorted list (also without `sort`).
//! - Errors (400): `Pagination parameters are invalid` (a non-integer page or page size, a bad
//!   regular expression), `Invalid pagination parameters: page number P, page size S`,
//!   `Page out of range, page: P page size: S, len: L`.
//!
//! Sorting on a key the typed row answers itself (`name`, `messages`, `consumers`, ...) sorts
//! and pages before any JSON is built; another key (`message_stats.publish_details.rate`) builds
//! every row's JSON first, as RabbitMQ augments every row for an "extended" sort.

use super::ApiError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// RabbitMQ's defaults: 100 rows a page, at most 500.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 500;

/// The list parameters of a request, as sent (strings); unknown parameters are ignored.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct Query {
    page: Option<String>,
    page_size: Option<String>,
    name: Option<String>,
    use_regex: Option<String>,
    sort: Option<String>,
    sort_reverse: Option<String>,
    columns: Option<String>,
}

/// One page asked for, with its name filter.
struct Pagination {
    page: i64,
    size: i64,
    filter: Option<Filter>,
}

/// The `name` filter of a paged request.
enum Filter {
    Contains(String),
    Regex(regex::Regex),
}

impl Filter {
    fn matches(&self, name: &str) -> bool {
        match self {
            Filter::Contains(lower) => name.to_lowercase().contains(lower.as_str()),
            Filter::Regex(re) => re.is_match(name),
        }
    }
}

fn invalid() -> ApiError {
    ApiError::bad_request("Pagination parameters are invalid")
}

/// A sort key's value, ordered as Erlang orders terms: numbers < atoms < lists/maps < binaries.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Key {
    Num(f64),
    Atom(&'static str),
    List(String),
    Str(String),
}

impl Key {
    pub fn str(s: &str) -> Key {
        Key::Str(s.to_string())
    }
    pub fn num(n: impl Into<f64>) -> Key {
        Key::Num(n.into())
    }
    pub fn bool(b: bool) -> Key {
        Key::Atom(if b { "true" } else { "false" })
    }
    /// The key of a JSON value (a missing value is 0, as RabbitMQ's `get_dotted_value`).
    pub fn of(v: Option<&Value>) -> Key {
        match v {
            None => Key::Num(0.0),
            Some(Value::Number(n)) => Key::Num(n.as_f64().unwrap_or(0.0)),
            Some(Value::Bool(b)) => Key::bool(*b),
            Some(Value::Null) => Key::Atom("null"),
            Some(Value::String(s)) => Key::Str(s.clone()),
            Some(other) => Key::List(other.to_string()),
        }
    }
    fn cmp(&self, other: &Key) -> Ordering {
        self.partial_cmp(other).unwrap_or(Ordering::Equal)
    }
}

/// The value at a dotted path (`message_stats.publish_details.rate`).
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// RabbitMQ's `columns=` (`rabbit_mgmt_util:extract_columns`): comma-separated dotted paths,
/// empty names dropped (`string:tokens`). An object keeps the keys some path starts with, in
/// its own order, and each kept value is filtered by the rest of those paths (all of it when a
/// path ends at that key); an array is filtered element by element; a string, number or the
/// like is kept whole (so `name.x` keeps `name`). RabbitMQ stores some values as Erlang maps,
/// which it never filters: the keys in `maps` are kept whole at any depth. An object filtered
/// down to nothing is `[]`, as RabbitMQ prints an empty property list.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns(Vec<Vec<String>>);

/// The values RabbitMQ 3.10 keeps as maps in its rows (queue, binding and consumer
/// `arguments`, a connection's `client_properties`, a vhost's `metadata`, ...).
pub const MAPS: &[&str] = &["arguments", "client_properties", "metadata", "backing_queue_status", "effective_policy_definition"];

/// The overview's maps: its totals and message rates are maps too (unlike a queue's
/// `message_stats`, a property list).
pub const OVERVIEW_MAPS: &[&str] = &[
    "arguments",
    "client_properties",
    "metadata",
    "backing_queue_status",
    "effective_policy_definition",
    "message_stats",
    "churn_rates",
    "queue_totals",
    "object_totals",
];

impl Columns {
    /// The columns of `columns=` text.
    pub fn parse(text: &str) -> Columns {
        Columns(text.split(',').map(|c| c.split('.').filter(|p| !p.is_empty()).map(str::to_string).collect()).filter(|c: &Vec<String>| !c.is_empty()).collect())
    }

    /// `v` with only these columns; `maps` are the keys kept whole.
    pub fn apply(&self, v: Value, maps: &[&str]) -> Value {
        let paths: Vec<&[String]> = self.0.iter().map(Vec::as_slice).collect();
        extract(v, &paths, maps)
    }
}

/// `v` filtered by `paths` (RabbitMQ's `extract_column_items`).
fn extract(v: Value, paths: &[&[String]], maps: &[&str]) -> Value {
    match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, x) in o {
                let under: Vec<&[String]> = paths.iter().filter(|p| p[0] == k).map(|p| &p[1..]).collect();
                if under.is_empty() {
                    continue;
                }
                // A path ending here (RabbitMQ's `descend_columns` returning `all`) keeps all.
                let x = if under.iter().any(|p| p.is_empty()) || maps.contains(&k.as_str()) { x } else { extract(x, &under, maps) };
                out.insert(k, x);
            }
            if out.is_empty() { Value::Array(Vec::new()) } else { Value::Object(out) }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|i| extract(i, paths, maps)).collect()),
        other => other,
    }
}

impl Query {
    /// The `query` object of an operation's arguments (none: the whole list, unsorted).
    pub fn of(args: &Value) -> Result<Query, ApiError> {
        match args.get("query") {
            None | Some(Value::Null) => Ok(Query::default()),
            Some(q) => super::args(q),
        }
    }

    /// `sort`, unless empty.
    fn sort_key(&self) -> Option<&str> {
        self.sort.as_deref().filter(|s| !s.is_empty())
    }

    fn reverse(&self) -> bool {
        self.sort_reverse.as_deref() == Some("true")
    }

    /// `columns`, if given (even empty: RabbitMQ then answers every object as `[]`).
    fn columns(&self) -> Option<Columns> {
        self.columns.as_deref().map(Columns::parse)
    }

    /// A single object answered with `columns` applied (`maps`: the keys kept whole).
    pub fn one(&self, v: Value, maps: &[&str]) -> Value {
        match self.columns() {
            Some(c) => c.apply(v, maps),
            None => v,
        }
    }

    /// RabbitMQ's `pagination_params`: `None` without `page`.
    fn pagination(&self) -> Result<Option<Pagination>, ApiError> {
        let int = |s: &Option<String>| -> Result<Option<i64>, ApiError> {
            s.as_deref().map(|s| s.parse::<i64>().map_err(|_| invalid())).transpose()
        };
        let (page, size) = (int(&self.page)?, int(&self.page_size)?);
        let Some(page) = page else { return Ok(None) };
        let size_ok = size.is_none_or(|s| (1..=MAX_PAGE_SIZE).contains(&s));
        if page < 1 || !size_ok {
            let size = size.map_or("undefined".to_string(), |s| s.to_string());
            return Err(ApiError::new(
                400,
                "invalid_pagination_parameters",
                format!("Invalid pagination parameters: page number {page}, page size {size}"),
            ));
        }
        let filter = match self.name.as_deref().filter(|n| !n.is_empty()) {
            None => None,
            Some(n) if self.use_regex.as_deref() == Some("true") => {
                let p = crate::broker::auth::pcre_compatible(n);
                Some(Filter::Regex(regex::RegexBuilder::new(&p).case_insensitive(true).build().map_err(|_| invalid())?))
            }
            Some(n) => Some(Filter::Contains(n.to_lowercase())),
        };
        Ok(Some(Pagination { page, size: size.unwrap_or(DEFAULT_PAGE_SIZE), filter }))
    }

    /// Answers a list of typed rows `rows` (in the list's default order): `paged` says whether
    /// RabbitMQ pages this list; `name` is a row's name (for the filter); `key` reads a sort key
    /// from the typed row, or `None` when only the JSON row has it; `render` builds a row's JSON
    /// (called for the rows answered only, unless the sort key needs every row's JSON).
    pub fn typed<R>(
        &self,
        rows: Vec<R>,
        paged: bool,
        name: impl Fn(&R) -> &str,
        key: impl Fn(&R, &str) -> Option<Key>,
        mut render: impl FnMut(&R) -> Value,
    ) -> Result<Value, ApiError> {
        let pagination = if paged { self.pagination()? } else { None };
        let total = rows.len();
        let mut rows = rows;
        if let Some(f) = pagination.as_ref().and_then(|p| p.filter.as_ref()) {
            rows.retain(|r| f.matches(name(r)));
        }
        let reverse = self.reverse();
        let page = match self.sort_key() {
            Some(k) if rows.first().is_some_and(|r| key(r, k).is_none()) => {
                // An extended key: every row's JSON first, then sort and page.
                let mut keyed: Vec<(Key, Value)> = rows.iter().map(|r| render(r)).map(|v| (Key::of(at(&v, k)), v)).collect();
                keyed.sort_by(|a, b| a.0.cmp(&b.0));
                let mut sorted: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
                if reverse {
                    sorted.reverse();
                }
                window(sorted, &pagination)?
            }
            sort => {
                if let Some(k) = sort {
                    // A stable sort: equal keys keep the list's order (RabbitMQ's default sort).
                    let mut keyed: Vec<(Key, R)> = rows.into_iter().map(|r| (key(&r, k).unwrap_or(Key::Num(0.0)), r)).collect();
                    keyed.sort_by(|a, b| a.0.cmp(&b.0));
                    rows = keyed.into_iter().map(|(_, r)| r).collect();
                }
                if reverse {
                    rows.reverse();
                }
                let (part, filtered) = window(rows, &pagination)?;
                (part.iter().map(&mut render).collect(), filtered)
            }
        };
        self.finish(page, total, pagination.as_ref())
    }

    /// Answers a list whose rows are already JSON (small lists: users, bindings, policies, ...).
    pub fn values(&self, rows: Vec<Value>, paged: bool) -> Result<Value, ApiError> {
        self.typed(rows, paged, |r| r.get("name").and_then(Value::as_str).unwrap_or(""), |r, k| Some(Key::of(at(r, k))), Value::clone)
    }

    /// The answer: the page object of a paged request, else the array; `columns` applied.
    fn finish(&self, (items, filtered): (Vec<Value>, usize), total: usize, p: Option<&Pagination>) -> Result<Value, ApiError> {
        let items: Vec<Value> = match self.columns() {
            Some(c) => items.into_iter().map(|i| c.apply(i, MAPS)).collect(),
            None => items,
        };
        let Some(p) = p else { return Ok(Value::Array(items)) };
        let size = p.size as usize;
        Ok(serde_json::json!({
            "filtered_count": filtered,
            "item_count": items.len(),
            "items": items,
            "page": p.page,
            "page_count": filtered.div_ceil(size),
            "page_size": p.size,
            "total_count": total,
        }))
    }
}

/// The rows of the page asked for (all without paging) and the number of rows it was cut from.
/// As RabbitMQ's `lists:sublist`, a page may start just past the end (an empty page); further
/// is out of range.
fn window<T>(rows: Vec<T>, p: &Option<Pagination>) -> Result<(Vec<T>, usize), ApiError> {
    let len = rows.len();
    let Some(p) = p else { return Ok((rows, len)) };
    let offset = (p.page - 1).saturating_mul(p.size);
    if offset > len as i64 {
        return Err(ApiError::new(
            400,
            "page_out_of_range",
            format!("Page out of range, page: {} page size: {}, len: {len}", p.page, p.size),
        ));
    }
    Ok((rows.into_iter().skip(offset as usize).take(p.size as usize).collect(), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(v: Value) -> Query {
        serde_json::from_value(v).unwrap()
    }

    fn rows() -> Vec<Value> {
        (0..5).map(|i| json!({"name": format!("Q{i}"), "messages": (i * 7) % 5, "x": {"rate": i}})).collect()
    }

    fn names(v: &Value) -> Vec<String> {
        let items = v.get("items").unwrap_or(v);
        items.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn sort_on_a_number_then_the_list_order_reversed() {
        let r = q(json!({"sort": "messages", "sort_reverse": "true"})).values(rows(), true).unwrap();
        // messages: Q0 0, Q1 2, Q2 4, Q3 1, Q4 3
        assert_eq!(names(&r), ["Q2", "Q4", "Q1", "Q3", "Q0"]);
    }

    #[test]
    fn missing_keys_count_as_zero_and_strings_sort_after_numbers() {
        let mut rs = rows();
        rs[2]["messages"] = json!("many");
        rs[4].as_object_mut().unwrap().remove("messages");
        let r = q(json!({"sort": "messages"})).values(rs, false).unwrap();
        assert_eq!(names(&r), ["Q0", "Q4", "Q3", "Q1", "Q2"]);
    }

    #[test]
    fn name_filter_pages_case_insensitively_and_only_when_paged() {
        let r = q(json!({"page": "2", "page_size": "1", "name": "^q[34]$", "use_regex": "true", "columns": "name"})).values(rows(), true).unwrap();
        assert_eq!(r, json!({"filtered_count": 2, "item_count": 1, "items": [{"name": "Q4"}], "page": 2, "page_count": 2, "page_size": 1, "total_count": 5}));
        let r = q(json!({"name": "q1"})).values(rows(), true).unwrap();
        assert_eq!(names(&r).len(), 5);
        // A list RabbitMQ does not page ignores the page parameters.
        let r = q(json!({"page": "2", "page_size": "1"})).values(rows(), false).unwrap();
        assert!(r.is_array());
    }

    #[test]
    fn rabbitmq_errors() {
        let err = |v: Value| q(v).values(rows(), true).unwrap_err();
        assert_eq!(err(json!({"page": "x"})).reason, "Pagination parameters are invalid");
        assert_eq!(err(json!({"page_size": "x"})).reason, "Pagination parameters are invalid");
        let e = err(json!({"page": "1", "page_size": "501"}));
        assert_eq!((e.error.as_str(), e.reason.as_str()), ("invalid_pagination_parameters", "Invalid pagination parameters: page number 1, page size 501"));
        assert_eq!(err(json!({"page": "0"})).reason, "Invalid pagination parameters: page number 0, page size undefined");
        let e = err(json!({"page": "4", "page_size": "2", "name": "q"}));
        assert_eq!((e.error.as_str(), e.reason.as_str()), ("page_out_of_range", "Page out of range, page: 4 page size: 2, len: 5"));
        assert_eq!(err(json!({"page": "1", "name": "(", "use_regex": "true"})).reason, "Pagination parameters are invalid");
        // Just past the end is an empty page, as RabbitMQ's lists:sublist allows.
        let r = q(json!({"page": "2", "page_size": "5"})).values(rows(), true).unwrap();
        assert_eq!((r["item_count"].as_u64(), r["page_count"].as_u64()), (Some(0), Some(1)));
    }

    #[test]
    fn columns_as_rabbitmq_extract_columns() {
        let row = json!({"name": "Q", "durable": true, "arguments": {"x-max-length": 5}, "garbage_collection": {"minor_gcs": 8, "max_heap_size": 0},
            "consumer_details": [{"consumer_tag": "c1", "ack_required": true}], "message_stats": {"publish": 3, "ack": 1}});
        let cols = |c: &str, maps: &[&str]| Columns::parse(c).apply(row.clone(), maps);
        // A path through a string keeps the string; empty names are dropped.
        assert_eq!(cols("name,name.x", MAPS), json!({"name": "Q"}));
        assert_eq!(cols("name.x,,durable..", MAPS), json!({"name": "Q", "durable": true}));
        // Objects and arrays of objects are filtered; maps are kept whole; nothing left is [].
        assert_eq!(
            cols("garbage_collection.minor_gcs,consumer_details.consumer_tag,arguments.nope,message_stats.publish", MAPS),
            json!({"garbage_collection": {"minor_gcs": 8}, "consumer_details": [{"consumer_tag": "c1"}], "arguments": {"x-max-length": 5}, "message_stats": {"publish": 3}})
        );
        assert_eq!(cols("message_stats.publish", OVERVIEW_MAPS), json!({"message_stats": {"publish": 3, "ack": 1}}));
        assert_eq!(cols("garbage_collection.nope", MAPS), json!({"garbage_collection": []}));
        assert_eq!(cols("", MAPS), json!([]));
        assert_eq!(q(json!({"columns": ""})).values(rows(), false).unwrap(), json!([[], [], [], [], []]));
    }

    #[test]
    fn typed_keys_render_only_the_page() {
        let mut rendered = 0;
        let r = q(json!({"page": "1", "page_size": "2", "sort": "messages"}))
            .typed(
                rows(),
                true,
                |r| r["name"].as_str().unwrap(),
                |r, k| (k == "messages").then(|| Key::of(r.get(k))),
                |r| {
                    rendered += 1;
                    r.clone()
                },
            )
            .unwrap();
        assert_eq!(names(&r), ["Q0", "Q3"]);
        assert_eq!(rendered, 2);
    }
}
