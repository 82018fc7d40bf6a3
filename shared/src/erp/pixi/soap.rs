//! SOAP 1.1 envelopes for the pixi* API: building a request, parsing a reply.
//!
//! pixi is SQL Server native XML web services behind SOAP: every call is a stored procedure, its
//! reply a list of `SqlRowSet` diffgrams, `SqlMessage`s (T-SQL messages) and a `SqlResultCode`.
//! This module knows that wire shape and nothing about orders; [`super`] maps rows to facts.
//!
//! Sources of the wire facts (comment next to each use):
//! - request envelope: the "HTTP Example" of every page under https://pixi-api-docs.de/api/<call>
//!   (SOAP 1.1, RPC style `ns1:<call>`, typed parameters);
//! - reply envelope: `drinks-it/pixi-api:tests/_data/pixiGetShopsResult.xml` (a stored real reply);
//! - faults: `drinks-it/pixi-api:src/Pixi/API/Soap/ParserListener/CurlParserFaultListener.php`.

use std::borrow::Cow;

/// The XML Schema type a parameter is declared with in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsdType {
    String,
    Integer,
    Boolean,
    /// SQL `money` (pixi-api-docs types these as "number"); sent as a plain decimal.
    Decimal,
}

impl XsdType {
    fn name(self) -> &'static str {
        match self {
            XsdType::String => "xsd:string",
            XsdType::Integer => "xsd:integer",
            XsdType::Boolean => "xsd:boolean",
            XsdType::Decimal => "xsd:decimal",
        }
    }
}

/// One request parameter. Names are pixi's (case as documented); values are escaped on output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub value: String,
    pub ty: XsdType,
}

impl Param {
    pub fn string(name: &'static str, value: impl Into<String>) -> Param {
        Param {
            name,
            value: value.into(),
            ty: XsdType::String,
        }
    }
    pub fn int(name: &'static str, value: i64) -> Param {
        Param {
            name,
            value: value.to_string(),
            ty: XsdType::Integer,
        }
    }
    /// pixi booleans are SQL `bit`: 0/1 (pixi-api-docs: "Type: bit ... Example: 0 or 1").
    pub fn bit(name: &'static str, value: bool) -> Param {
        Param {
            name,
            value: if value { "1" } else { "0" }.into(),
            ty: XsdType::Boolean,
        }
    }
    pub fn decimal(name: &'static str, value: rust_decimal::Decimal) -> Param {
        Param {
            name,
            value: value.to_string(),
            ty: XsdType::Decimal,
        }
    }
}

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Text made safe for XML 1.0 character data: characters XML cannot carry at all (NUL and the
/// other C0 controls except tab/CR/LF) are dropped, `<`, `>`, `&`, quotes are escaped (so `]]>`
/// can never close anything).
pub fn escape_text(raw: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
    };
    if raw.chars().all(allowed) {
        quick_xml::escape::escape(raw)
    } else {
        let clean: String = raw.chars().filter(|c| allowed(*c)).collect();
        Cow::Owned(quick_xml::escape::escape(clean.as_str()).into_owned())
    }
}

/// A SOAP 1.1 request envelope for `call` with `params` in the given (documented) order.
///
/// Shape from the pixi-api-docs "HTTP Example": `SOAP-ENV` 1.1 envelope, RPC/encoded body with
/// `SOAP-ENV:encodingStyle`, operation element `ns1:<call>` in the endpoint namespace, each
/// parameter an unqualified element with `xsi:type`. Optional parameters are omitted, not sent
/// empty (`lars85/pixi-client:src/Client/SoapClient.php` skips nulls; the Ruby client README
/// warns that pixi rejects parameters out of the documented order).
pub fn envelope(namespace: &str, call: &str, params: &[Param]) -> String {
    let mut s = String::with_capacity(512 + params.len() * 64);
    s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    s.push_str(r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV=""#);
    s.push_str(SOAP_ENV);
    s.push_str(r#"" xmlns:ns1=""#);
    s.push_str(&escape_text(namespace));
    s.push_str(r#"" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#);
    s.push_str(r#" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><SOAP-ENV:Body><ns1:"#);
    s.push_str(call);
    s.push('>');
    for p in params {
        s.push('<');
        s.push_str(p.name);
        s.push_str(r#" xsi:type=""#);
        s.push_str(p.ty.name());
        s.push_str(r#"">"#);
        s.push_str(&escape_text(&p.value));
        s.push_str("</");
        s.push_str(p.name);
        s.push('>');
    }
    s.push_str("</ns1:");
    s.push_str(call);
    s.push_str("></SOAP-ENV:Body></SOAP-ENV:Envelope>");
    s
}

/// One result row: column name → text, in document order. Lookups ignore case and surrounding
/// blanks (SQL `char` columns come back blank-padded, e.g. `<CountryCodeAfterbuy>D </…>` in the
/// pixiGetOrder sample on pixi-api-docs.de).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row(pub Vec<(String, String)>);

impl Row {
    /// The trimmed value of a column; `None` when absent or empty (SQL NULL columns are left out
    /// of the row, as in the stored pixiGetShops reply).
    pub fn get(&self, column: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(column))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first present column of several spellings.
    pub fn first(&self, columns: &[&str]) -> Option<&str> {
        columns.iter().find_map(|c| self.get(c))
    }

    /// Whether any value of the row contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.0.iter().any(|(_, v)| v.contains(needle))
    }
}

/// A T-SQL message returned with the reply (`SqlMessage`: Class, LineNumber, Message, Number,
/// Procedure, Server, Source, State — `modomoto/pixi_client:lib/pixi_client/response_parser.rb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlMessage {
    /// Severity; SQL Server treats classes above 10 as errors.
    pub class: Option<i32>,
    pub number: Option<i64>,
    pub message: String,
}

/// A parsed reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// `SqlRowSet1`, `SqlRowSet2`, … in order; each a list of rows (one `<row>` element is one
    /// row, so a single-row result needs no special case here).
    pub result_sets: Vec<Vec<Row>>,
    pub result_code: Option<i64>,
    pub messages: Vec<SqlMessage>,
    /// Other leaf elements of the result (e.g. a scalar `return`, pixiCanChangeAddress).
    pub scalars: Vec<(String, String)>,
}

impl Reply {
    /// The rows of the first result set (empty when there is none).
    pub fn rows(&self) -> &[Row] {
        self.result_sets.first().map_or(&[], Vec::as_slice)
    }

    /// Every row of every result set.
    pub fn all_rows(&self) -> impl Iterator<Item = &Row> {
        self.result_sets.iter().flatten()
    }

    /// Why pixi refused the call, if it did. Error signalling is per call, so all documented
    /// conventions are checked (reference/erp.md §1.2):
    /// - `SqlResultCode` ≠ 0 (`pixiGetShopsResult.xml` shows 0 for success);
    /// - a `SqlMessage` of class > 10;
    /// - a row `ReturnCode` = `ERROR` with `ErrorMessage` (pixiSetOrderShippingLock,
    ///   pixiCACreateManualBooking, pixiReleaseOrder on pixi-api-docs.de; `INFO` is not an error);
    /// - a row `Status` = `ERROR` with `Message` (pixiSetInvoicePaid, pixiManualCreditCreate).
    pub fn refusal(&self) -> Option<String> {
        let msgs = || {
            self.messages
                .iter()
                .map(|m| m.message.trim())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        };
        if let Some(code) = self.result_code.filter(|c| *c != 0) {
            let m = msgs();
            return Some(if m.is_empty() {
                format!("SqlResultCode {code}")
            } else {
                format!("SqlResultCode {code}: {m}")
            });
        }
        if let Some(m) = self
            .messages
            .iter()
            .find(|m| m.class.is_some_and(|c| c > 10))
        {
            return Some(m.message.trim().to_string());
        }
        for row in self.all_rows() {
            if row
                .get("ReturnCode")
                .is_some_and(|c| c.eq_ignore_ascii_case("ERROR"))
            {
                return Some(
                    row.get("ErrorMessage")
                        .unwrap_or("ReturnCode ERROR")
                        .to_string(),
                );
            }
            if row
                .get("Status")
                .is_some_and(|c| c.eq_ignore_ascii_case("ERROR"))
                && row.get("Message").is_some()
            {
                return Some(row.get("Message").unwrap_or("Status ERROR").to_string());
            }
        }
        None
    }
}

/// What an unusable reply was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A SOAP fault: the server refused the request.
    #[error("SOAP fault {code}: {message}")]
    Fault { code: String, message: String },
    /// Not a SOAP reply we understand.
    #[error("{0}")]
    Malformed(String),
}

fn is(n: &roxmltree::Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name
}

fn text_of(n: &roxmltree::Node<'_, '_>) -> String {
    n.descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect()
}

/// A column's value: its text, or, for a column holding XML elements (pixiGetOrder's
/// `Orderlines`, `BillingAddress`, …), the source text of those elements, to be read with
/// [`parse_rows`].
fn column_value(xml: &str, c: &roxmltree::Node<'_, '_>) -> String {
    let (Some(first), Some(last)) = (c.first_child(), c.last_child()) else {
        return String::new();
    };
    if c.children().any(|k| k.is_element()) {
        xml.get(first.range().start..last.range().end)
            .unwrap_or_default()
            .to_string()
    } else {
        text_of(c)
    }
}

/// The attributes and child-element columns of one `<row>` element.
fn row_of(xml: &str, row: &roxmltree::Node<'_, '_>) -> Row {
    let mut cols: Vec<(String, String)> = row
        .attributes()
        .map(|a| (a.name().to_string(), a.value().to_string()))
        .collect();
    cols.extend(
        row.children()
            .filter(|c| c.is_element())
            .map(|c| (c.tag_name().name().to_string(), column_value(xml, &c))),
    );
    Row(cols)
}

/// The `<row>` elements of an XML column value (nested elements or the same XML sent as
/// escaped text), e.g. `<row AddrKey="1109" AddrType="B"><ShopID>LEO</ShopID>…</row>` in the
/// pixiGetOrder samples. Anything but rows and blanks at the top is refused, as is malformed
/// XML and any DTD.
pub fn parse_rows(fragment: &str) -> Result<Vec<Row>, String> {
    let wrapped = format!("<rows>{fragment}</rows>");
    let doc = roxmltree::Document::parse(&wrapped).map_err(|e| format!("not XML: {e}"))?;
    let mut rows = Vec::new();
    for n in doc.root_element().children() {
        if is(&n, "row") {
            rows.push(row_of(&wrapped, &n));
        } else if n.is_element() {
            return Err(format!(
                "<{}> where a <row> was expected",
                n.tag_name().name()
            ));
        } else if n.is_text() && !n.text().unwrap_or_default().trim().is_empty() {
            return Err("text where a <row> was expected".into());
        }
    }
    Ok(rows)
}

fn child<'a, 'i>(n: &roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| is(c, name))
}

/// Parses a SOAP 1.1 (or 1.2) reply body. DTDs are refused (roxmltree's default), so no entity
/// expansion from a hostile server.
pub fn parse_reply(xml: &str) -> Result<Reply, ReplyError> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| ReplyError::Malformed(format!("not XML: {e}")))?;
    let env = doc.root_element();
    if env.tag_name().name() != "Envelope" {
        return Err(ReplyError::Malformed(format!(
            "root element is <{}>, not a SOAP Envelope",
            env.tag_name().name()
        )));
    }
    let body = child(&env, "Body")
        .ok_or_else(|| ReplyError::Malformed("SOAP envelope without Body".into()))?;
    let first = body
        .children()
        .find(|c| c.is_element())
        .ok_or_else(|| ReplyError::Malformed("empty SOAP Body".into()))?;
    if first.tag_name().name() == "Fault" {
        // SOAP 1.1: faultcode/faultstring/detail; SOAP 1.2 (sent by the PHP SDK's server side):
        // Code/Value, Reason/Text. CurlParserFaultListener reads `Value` and `Text`.
        let find = |names: &[&str]| {
            first
                .descendants()
                .find(|d| d.is_element() && names.contains(&d.tag_name().name()))
                .map(|d| text_of(&d).trim().to_string())
        };
        let code = find(&["faultcode", "Value"]).unwrap_or_default();
        let mut message = find(&["faultstring", "Text"]).unwrap_or_default();
        // SQL Server puts its SqlMessage into the fault detail.
        let detail: Vec<String> = first
            .descendants()
            .filter(|d| is(d, "SqlMessage"))
            .filter_map(|m| child(&m, "Message").map(|t| text_of(&t).trim().to_string()))
            .filter(|m| !m.is_empty() && !message.contains(m.as_str()))
            .collect();
        if !detail.is_empty() {
            message = format!("{message} ({})", detail.join("; "));
        }
        return Err(ReplyError::Fault { code, message });
    }
    // `<call>Response/<call>Result` (pixiGetShopsResult.xml); tolerate a missing Result wrapper.
    let result = first
        .children()
        .find(|c| c.is_element() && c.tag_name().name().ends_with("Result"))
        .unwrap_or(first);
    let mut reply = Reply::default();
    for item in result.children().filter(|c| c.is_element()) {
        match item.tag_name().name() {
            "SqlRowSet" => {
                let mut rows = Vec::new();
                if let Some(diffgram) = item.descendants().find(|d| is(d, "diffgram")) {
                    for set in diffgram.children().filter(|c| c.is_element()) {
                        for row in set.children().filter(|c| is(c, "row")) {
                            rows.push(row_of(xml, &row));
                        }
                    }
                }
                reply.result_sets.push(rows);
            }
            "SqlResultCode" => {
                let t = text_of(&item);
                let code = t.trim().parse::<i64>().map_err(|_| {
                    ReplyError::Malformed(format!("SqlResultCode {t:?} is not a number"))
                })?;
                reply.result_code = Some(code);
            }
            "SqlMessage" => {
                let field = |n: &str| child(&item, n).map(|c| text_of(&c).trim().to_string());
                reply.messages.push(SqlMessage {
                    class: field("Class").and_then(|c| c.parse().ok()),
                    number: field("Number").and_then(|c| c.parse().ok()),
                    message: field("Message").unwrap_or_default(),
                });
            }
            other => reply.scalars.push((other.to_string(), text_of(&item))),
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_escapes_every_value_and_keeps_order() {
        let xml = envelope(
            "https://api.example/pixi/",
            "pixiAddOrderComment",
            &[
                Param::int("OrderNr", 7),
                Param::string("Comment", "a<b & c]]>d\u{0}e\"'"),
            ],
        );
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let op = doc
            .descendants()
            .find(|n| is(n, "pixiAddOrderComment"))
            .unwrap();
        assert_eq!(op.tag_name().namespace(), Some("https://api.example/pixi/"));
        let names: Vec<_> = op
            .children()
            .filter(|c| c.is_element())
            .map(|c| c.tag_name().name())
            .collect();
        assert_eq!(names, ["OrderNr", "Comment"]);
        let comment = op.children().find(|c| is(c, "Comment")).unwrap();
        assert_eq!(comment.text(), Some("a<b & c]]>de\"'"));
        assert!(!xml.contains("]]>"));
    }

    #[test]
    fn parses_rowsets_messages_and_faults() {
        let xml = r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sqlresultstream="urn:x" xmlns:m="urn:m"><SOAP-ENV:Body><m:pixiXResponse><m:pixiXResult>
          <sqlresultstream:SqlRowSet><x:schema xmlns:x="urn:xsd"/><diffgr:diffgram xmlns:diffgr="urn:schemas-microsoft-com:xml-diffgram-v1"><SqlRowSet1 xmlns="urn:s1"><row><ReturnCode>ERROR</ReturnCode><ErrorMessage>nope &amp; no</ErrorMessage></row></SqlRowSet1></diffgr:diffgram></sqlresultstream:SqlRowSet>
          <sqlresultstream:SqlResultCode>0</sqlresultstream:SqlResultCode></m:pixiXResult></m:pixiXResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
        let r = parse_reply(xml).unwrap();
        assert_eq!(r.rows().len(), 1);
        assert_eq!(r.refusal().as_deref(), Some("nope & no"));
        let fault = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>bad</faultstring></s:Fault></s:Body></s:Envelope>"#;
        assert_eq!(
            parse_reply(fault),
            Err(ReplyError::Fault {
                code: "s:Client".into(),
                message: "bad".into()
            })
        );
        assert!(matches!(
            parse_reply("<html/>"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_reply("<!DOCTYPE x [<!ENTITY a \"b\">]><x/>"),
            Err(ReplyError::Malformed(_))
        ));
    }
}
