//! The simulator's wire layer: reading a SOAP 1.1 request, writing pixi-shaped replies.
//!
//! Replies follow the stored real pixi reply `drinks-it/pixi-api:tests/_data/pixiGetShopsResult.xml`:
//! a SOAP 1.1 envelope (`xml:space="preserve"`, the SQL Server SOAP namespaces), body
//! `method:<call>Response/method:<call>Result`, one `sqlresultstream:SqlRowSet` per result set with
//! an inline XSD schema and a `diffgr:diffgram/SqlRowSetN/row*`, SQL NULL columns left out of the
//! row, then `sqlresultstream:SqlResultCode`. T-SQL messages are `sqlresultstream:SqlMessage`
//! elements with the fields named in `modomoto/pixi_client:lib/pixi_client/response_parser.rb`.

use quick_xml::escape::escape;
use rust_decimal::Decimal;

/// SQL column types as the inline schema names them (`sqltypes:int|varchar|datetime|bit|money`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Int,
    Varchar,
    Money,
    Bit,
    DateTime,
    /// SQL `xml` (pixiGetOrder's address, customer and line columns).
    Xml,
}

impl SqlType {
    fn name(self) -> &'static str {
        match self {
            SqlType::Int => "int",
            SqlType::Varchar => "varchar",
            SqlType::Money => "money",
            SqlType::Bit => "bit",
            SqlType::DateTime => "datetime",
            SqlType::Xml => "xml",
        }
    }
}

/// A typed cell value; `None` cells are SQL NULL and left out of the row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Text(String),
    Money(Decimal),
    Bit(bool),
    Time(chrono::NaiveDateTime),
    /// XML content written into the column as elements (already well-formed and escaped).
    Xml(String),
}

impl Val {
    pub(crate) fn render(&self) -> String {
        match self {
            Val::Int(i) => i.to_string(),
            Val::Text(t) => escape(t.as_str()).into_owned(),
            // SQL `money` prints four decimals ("0.0000" in the lars85/pixi-client invoice sample).
            Val::Money(d) => {
                let mut d = *d;
                d.rescale(4);
                d.to_string()
            }
            Val::Bit(b) => if *b { "1" } else { "0" }.to_string(),
            // SQL Server XML datetime: 2019-01-31T13:35:19.267 (lars85 invoice sample).
            Val::Time(t) => t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
            Val::Xml(x) => x.clone(),
        }
    }
}

pub fn text(s: impl Into<String>) -> Option<Val> {
    Some(Val::Text(s.into()))
}

/// One result set: column declarations and rows of cells aligned with them.
#[derive(Debug, Clone, Default)]
pub struct RowSet {
    pub columns: Vec<(&'static str, SqlType)>,
    pub rows: Vec<Vec<Option<Val>>>,
}

impl RowSet {
    pub fn new(columns: &[(&'static str, SqlType)]) -> RowSet {
        RowSet {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row given as (column, value) pairs; columns not named are NULL.
    pub fn push(&mut self, cells: Vec<(&'static str, Option<Val>)>) {
        let mut row = vec![None; self.columns.len()];
        for (name, v) in cells {
            if let Some(i) = self.columns.iter().position(|(c, _)| *c == name) {
                row[i] = v;
            }
        }
        self.rows.push(row);
    }
}

/// What a handled call answers.
#[derive(Debug, Clone)]
pub enum Outcome {
    Result {
        sets: Vec<RowSet>,
        /// Scalar result elements after the row sets (pixiCanChangeAddress' `return`).
        scalars: Vec<(&'static str, String)>,
        /// (class, message) T-SQL messages.
        messages: Vec<(i32, String)>,
        code: i64,
    },
    /// A SOAP fault (`faultcode`, `faultstring`).
    Fault { code: &'static str, message: String },
}

impl Outcome {
    pub fn sets(sets: Vec<RowSet>) -> Outcome {
        Outcome::Result {
            sets,
            scalars: Vec::new(),
            messages: Vec::new(),
            code: 0,
        }
    }
    /// One scalar result element and SqlResultCode 0, e.g. `<return>1</return>` as in the
    /// response example of https://pixi-api-docs.de/api/pixiCanChangeAddress.
    pub fn scalar(name: &'static str, value: impl Into<String>) -> Outcome {
        Outcome::Result {
            sets: Vec::new(),
            scalars: vec![(name, value.into())],
            messages: Vec::new(),
            code: 0,
        }
    }
    pub fn rows(set: RowSet) -> Outcome {
        Outcome::sets(vec![set])
    }
    /// No result set, SqlResultCode 0 (calls whose page documents no response).
    pub fn empty() -> Outcome {
        Outcome::sets(Vec::new())
    }
    /// A `ReturnCode`/`ErrorMessage` row (pixiSetOrderShippingLock, pixiCACreateManualBooking).
    pub fn return_code(code: &str, message: &str) -> Outcome {
        let mut s = RowSet::new(&[
            ("ReturnCode", SqlType::Varchar),
            ("ErrorMessage", SqlType::Varchar),
        ]);
        s.push(vec![
            ("ReturnCode", text(code)),
            ("ErrorMessage", text(message)),
        ]);
        Outcome::rows(s)
    }
    /// A RAISERROR inside the procedure: SqlMessage of class 16 and return value 1.
    pub fn sql_error(message: impl Into<String>) -> Outcome {
        Outcome::Result {
            sets: Vec::new(),
            scalars: Vec::new(),
            messages: vec![(16, message.into())],
            code: 1,
        }
    }
    pub fn client_fault(message: impl Into<String>) -> Outcome {
        Outcome::Fault {
            code: "SOAP-ENV:Client",
            message: message.into(),
        }
    }
    pub fn server_fault(message: impl Into<String>) -> Outcome {
        Outcome::Fault {
            code: "SOAP-ENV:Server",
            message: message.into(),
        }
    }
}

const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Namespace declarations of the stored pixiGetShops reply.
const NAMESPACES: &str = concat!(
    r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
    r#"xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sql="http://schemas.microsoft.com/sqlserver/2004/SOAP" "#,
    r#"xmlns:sqlsoaptypes="http://schemas.microsoft.com/sqlserver/2004/SOAP/types" "#,
    r#"xmlns:sqlrowcount="http://schemas.microsoft.com/sqlserver/2004/SOAP/types/SqlRowCount" "#,
    r#"xmlns:sqlmessage="http://schemas.microsoft.com/sqlserver/2004/SOAP/types/SqlMessage" "#,
    r#"xmlns:sqlresultstream="http://schemas.microsoft.com/sqlserver/2004/SOAP/types/SqlResultStream" "#,
    r#"xmlns:sqltransaction="http://schemas.microsoft.com/sqlserver/2004/SOAP/types/SqlTransaction" "#,
    r#"xmlns:sqltypes="http://schemas.microsoft.com/sqlserver/2004/sqltypes" xmlns:msdata="urn:schemas-microsoft-com:xml-msdata""#
);

fn message_xml(call: &str, class: i32, message: &str) -> String {
    format!(
        concat!(
            r#"<sqlresultstream:SqlMessage xsi:type="sqlmessage:SqlMessage">"#,
            "<sqlmessage:Class>{class}</sqlmessage:Class><sqlmessage:LineNumber>1</sqlmessage:LineNumber>",
            "<sqlmessage:Message>{msg}</sqlmessage:Message><sqlmessage:Number>50000</sqlmessage:Number>",
            "<sqlmessage:Procedure>{call}</sqlmessage:Procedure><sqlmessage:Server>PIXISIM</sqlmessage:Server>",
            "<sqlmessage:Source>Microsoft-SQL/9.0</sqlmessage:Source><sqlmessage:State>1</sqlmessage:State>",
            "</sqlresultstream:SqlMessage>"
        ),
        class = class,
        msg = escape(message),
        call = escape(call),
    )
}

/// Renders a call's outcome as the HTTP status and SOAP body pixi would send.
pub fn render(namespace: &str, call: &str, outcome: &Outcome) -> (u16, String) {
    match outcome {
        Outcome::Fault { code, message } => (500, fault_xml(code, message, call)),
        Outcome::Result {
            sets,
            scalars,
            messages,
            code,
        } => {
            let mut s = String::new();
            s.push_str(&format!(
                r#"<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xml:space="preserve" {NAMESPACES} xmlns:method="{}"><SOAP-ENV:Body>"#,
                escape(namespace)
            ));
            s.push_str(&format!("<method:{call}Response><method:{call}Result>"));
            for (i, set) in sets.iter().enumerate() {
                let n = i + 1;
                s.push_str(r#"<sqlresultstream:SqlRowSet xsi:type="sqlsoaptypes:SqlRowSet" msdata:UseDataSetSchemaOnly="true" msdata:UDTColumnValueWrapped="true">"#);
                s.push_str(&format!(
                    r#"<xsd:schema targetNamespace="urn:schemas-microsoft-com:sql:SqlRowSet{n}" elementFormDefault="qualified"><xsd:import namespace="http://schemas.microsoft.com/sqlserver/2004/sqltypes"/><xsd:element name="SqlRowSet{n}" msdata:IsDataSet="true" msdata:DataSetNamespace="urn:schemas-microsoft-com:sql:SqlDataSet" msdata:DataSetName="SqlDataSet"><xsd:complexType><xsd:sequence><xsd:element name="row" minOccurs="0" maxOccurs="unbounded"><xsd:complexType><xsd:sequence>"#
                ));
                for (name, ty) in &set.columns {
                    s.push_str(&format!(
                        r#"<xsd:element name="{name}" type="sqltypes:{}" minOccurs="0"/>"#,
                        ty.name()
                    ));
                }
                s.push_str("</xsd:sequence></xsd:complexType></xsd:element></xsd:sequence></xsd:complexType></xsd:element></xsd:schema>");
                s.push_str(&format!(
                    r#"<diffgr:diffgram xmlns:diffgr="urn:schemas-microsoft-com:xml-diffgram-v1"><SqlRowSet{n} xmlns="urn:schemas-microsoft-com:sql:SqlRowSet{n}">"#
                ));
                for row in &set.rows {
                    s.push_str("<row>");
                    for ((name, _), cell) in set.columns.iter().zip(row) {
                        if let Some(v) = cell {
                            s.push_str(&format!("<{name}>{}</{name}>", v.render()));
                        }
                    }
                    s.push_str("</row>");
                }
                s.push_str(&format!(
                    "</SqlRowSet{n}></diffgr:diffgram></sqlresultstream:SqlRowSet>"
                ));
            }
            for (name, v) in scalars {
                s.push_str(&format!(
                    "<method:{name}>{}</method:{name}>",
                    escape(v.as_str())
                ));
            }
            for (class, m) in messages {
                s.push_str(&message_xml(call, *class, m));
            }
            s.push_str(&format!(
                r#"<sqlresultstream:SqlResultCode xsi:type="sqlsoaptypes:SqlResultCode">{code}</sqlresultstream:SqlResultCode>"#
            ));
            s.push_str(&format!(
                "</method:{call}Result></method:{call}Response></SOAP-ENV:Body></SOAP-ENV:Envelope>"
            ));
            (200, s)
        }
    }
}

/// A SOAP 1.1 fault (HTTP 500, SOAP 1.1 §6.2), with the SQL message in `detail` as SQL Server
/// native web services put it.
pub fn fault_xml(code: &str, message: &str, call: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope {NAMESPACES}><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>{}</faultcode><faultstring>{}</faultstring><detail>{}</detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
        escape(code),
        escape(message),
        message_xml(call, 16, message)
    )
}

/// A parsed request: operation name, its namespace, parameters in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub call: String,
    pub namespace: Option<String>,
    pub params: Vec<(String, String)>,
}

/// Reads a SOAP 1.1 request envelope; errors are fault messages.
pub fn parse_request(body: &str) -> Result<Request, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("XML parsing failed: {e}"))?;
    let env = doc.root_element();
    if env.tag_name().name() != "Envelope" || env.tag_name().namespace() != Some(SOAP_ENV) {
        return Err("not a SOAP 1.1 Envelope".into());
    }
    let body = env
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "Body")
        .ok_or("SOAP Body missing")?;
    let op = body
        .children()
        .find(|c| c.is_element())
        .ok_or("SOAP Body is empty")?;
    let params = op
        .children()
        .filter(|c| c.is_element())
        .map(|p| {
            let v: String = p
                .descendants()
                .filter(|d| d.is_text())
                .filter_map(|d| d.text())
                .collect();
            (p.tag_name().name().to_string(), v)
        })
        .collect();
    Ok(Request {
        call: op.tag_name().name().to_string(),
        namespace: op.tag_name().namespace().map(str::to_string),
        params,
    })
}
