//! The business's side of custom audiences: reading a customer list.
//!
//! A customer list is CSV with a header, in the columns businesses already
//! export for custom audiences: `phone`, `email`, `fn`, `ln`, `country`
//! (case and surrounding spaces ignored). Any other column is ignored with
//! a warning. Each row is normalised on the business's machine: the phone
//! number to E.164 (with the row's `country`, else the default region),
//! the email trimmed and lowercased; a row with neither a valid phone nor
//! a valid email is rejected with its reasons, and a row with one valid
//! and one invalid identifier keeps the valid one (the invalid one is
//! counted). `fn` and `ln` are read and never leave the machine: the
//! partner matches phone numbers and emails only.
//!
//! The reader streams: it holds one record at a time, and a line longer
//! than [`MAX_LINE_BYTES`] ends the read with an error instead of growing
//! a buffer without bound. What ends a read (exit 2 in the CLI): no
//! header, a header without `phone` or `email`, a file that is not
//! comma-separated, bad UTF-8, a field longer than [`MAX_FIELD_BYTES`], a
//! line too long, or no data row at all.

use crate::identity::{Email, PhoneNumber};
use std::io::Read;

/// The longest field a customer list may have.
pub const MAX_FIELD_BYTES: usize = 1024;
/// The longest physical line.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Why a list cannot be read at all. Never carries a field's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    #[error(
        "the file is empty: a customer list starts with a header line (phone,email,fn,ln,country)"
    )]
    NoHeader,
    #[error("the header has neither a `phone` nor an `email` column (it has: {0})")]
    NoIdentifierColumn(String),
    #[error("the file looks {0}-separated; a customer list is comma-separated")]
    WrongDelimiter(&'static str),
    #[error("line {line} is not valid UTF-8")]
    BadUtf8 { line: u64 },
    #[error("line {line} has a field longer than {MAX_FIELD_BYTES} bytes")]
    FieldTooLong { line: u64 },
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: u64 },
    #[error("line {line}: {message}")]
    Csv { line: u64, message: String },
    #[error("the list has a header but no customer rows")]
    Empty,
    #[error("reading the file: {0}")]
    Io(String),
}

/// The columns read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Phone,
    Email,
    FirstName,
    LastName,
    Country,
}

fn column(name: &str) -> Option<Column> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "phone" => Column::Phone,
        "email" => Column::Email,
        "fn" => Column::FirstName,
        "ln" => Column::LastName,
        "country" => Column::Country,
        _ => return None,
    })
}

/// One customer, normalised: what may leave the machine (after blinding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    /// The line the row starts on (1 is the header).
    pub line: u64,
    pub phone: Option<PhoneNumber>,
    pub email: Option<Email>,
    /// An identifier was present but invalid (the other one was kept).
    pub dropped: Vec<&'static str>,
}

/// A row kept out of the upload, with why (never its content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

/// What a row became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    Customer(Customer),
    Rejected(Rejected),
}

/// The counts a business sees after reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub valid_phones: u64,
    pub valid_emails: u64,
    pub rejected: u64,
}

impl Summary {
    pub fn add(&mut self, row: &Row) {
        self.rows += 1;
        match row {
            Row::Customer(c) => {
                self.valid_phones += u64::from(c.phone.is_some());
                self.valid_emails += u64::from(c.email.is_some());
            }
            Row::Rejected(_) => self.rejected += 1,
        }
    }
}

/// Ends a read at the first physical line longer than the limit, so that a
/// file without line breaks cannot grow the CSV reader's buffer.
struct LineLimit<R> {
    inner: R,
    line: u64,
    run: usize,
    overlong_at: Option<u64>,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.line += 1;
                self.run = 0;
            } else {
                self.run += 1;
                if self.run > MAX_LINE_BYTES {
                    self.overlong_at = Some(self.line + 1);
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "line too long",
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// A customer list being read, row by row.
pub struct CustomerList<R: Read> {
    csv: csv::Reader<LineLimit<R>>,
    columns: Vec<Option<Column>>,
    /// Columns that are not read, for a warning.
    pub ignored: Vec<String>,
    default_region: Option<String>,
    record: csv::StringRecord,
    rows: u64,
    done: bool,
}

impl<R: Read> std::fmt::Debug for CustomerList<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerList")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

fn csv_error<R>(e: csv::Error, limit: &LineLimit<R>) -> ListError {
    if let Some(line) = limit.overlong_at {
        return ListError::LineTooLong { line };
    }
    let line = e.position().map_or(limit.line + 1, |p| p.line());
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => ListError::BadUtf8 { line },
        csv::ErrorKind::Io(io) => ListError::Io(io.to_string()),
        csv::ErrorKind::UnequalLengths { .. } => ListError::Csv {
            line,
            message: "the row has a different number of fields than the header".into(),
        },
        _ => ListError::Csv {
            line,
            message: "not valid CSV".into(),
        },
    }
}

impl<R: Read> CustomerList<R> {
    /// Reads the header. `default_region` (ISO 3166-1 alpha-2) is for
    /// national numbers in rows without a `country`.
    pub fn new(input: R, default_region: Option<&str>) -> Result<Self, ListError> {
        let limited = LineLimit {
            inner: input,
            line: 0,
            run: 0,
            overlong_at: None,
        };
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(limited);
        let mut header = csv::StringRecord::new();
        let got = csv
            .read_record(&mut header)
            .map_err(|e| csv_error(e, csv.get_ref()))?;
        if !got || header.iter().all(|h| h.trim().is_empty()) {
            return Err(ListError::NoHeader);
        }
        if header.len() == 1 {
            let h = &header[0];
            for (sep, name) in [(';', "semicolon"), ('\t', "tab"), ('|', "pipe")] {
                if h.contains(sep) {
                    return Err(ListError::WrongDelimiter(name));
                }
            }
        }
        let columns: Vec<Option<Column>> = header.iter().map(column).collect();
        if !columns
            .iter()
            .any(|c| matches!(c, Some(Column::Phone | Column::Email)))
        {
            let names: Vec<String> = header
                .iter()
                .take(10)
                .map(|h| h.chars().take(32).collect())
                .collect();
            return Err(ListError::NoIdentifierColumn(names.join(", ")));
        }
        let ignored = header
            .iter()
            .zip(&columns)
            .filter(|(_, c)| c.is_none())
            .map(|(h, _)| h.chars().take(64).collect())
            .collect();
        Ok(CustomerList {
            csv,
            columns,
            ignored,
            default_region: default_region.map(str::to_owned),
            record: csv::StringRecord::new(),
            rows: 0,
            done: false,
        })
    }

    /// The next row; `None` at the end (after at least one row: an empty
    /// list is [`ListError::Empty`]).
    pub fn next_row(&mut self) -> Option<Result<Row, ListError>> {
        if self.done {
            return None;
        }
        match self.csv.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                return (self.rows == 0).then_some(Err(ListError::Empty));
            }
            Err(e) => {
                self.done = true;
                return Some(Err(csv_error(e, self.csv.get_ref())));
            }
        }
        let line = self.record.position().map_or(self.rows + 2, |p| p.line());
        if self.record.iter().any(|f| f.len() > MAX_FIELD_BYTES) {
            self.done = true;
            return Some(Err(ListError::FieldTooLong { line }));
        }
        if self.record.iter().all(|f| f.trim().is_empty()) {
            // A blank line is not a row.
            return self.next_row();
        }
        self.rows += 1;
        Some(Ok(self.normalise(line)))
    }

    fn field(&self, want: Column) -> Option<&str> {
        self.columns
            .iter()
            .position(|c| *c == Some(want))
            .and_then(|i| self.record.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    fn normalise(&self, line: u64) -> Row {
        let region = self
            .field(Column::Country)
            .map(str::to_owned)
            .or_else(|| self.default_region.clone());
        let mut reasons = Vec::new();
        let mut dropped = Vec::new();
        let phone = self.field(Column::Phone).and_then(|raw| {
            match PhoneNumber::parse(raw, region.as_deref()) {
                Ok(p) => Some(p),
                Err(e) => {
                    reasons.push(format!("phone: {e}"));
                    dropped.push("phone");
                    None
                }
            }
        });
        let email = self
            .field(Column::Email)
            .and_then(|raw| match Email::parse(raw) {
                Ok(e) => Some(e),
                Err(e) => {
                    reasons.push(format!("email: {e}"));
                    dropped.push("email");
                    None
                }
            });
        if phone.is_none() && email.is_none() {
            if reasons.is_empty() {
                reasons.push("no phone number and no email".into());
            }
            return Row::Rejected(Rejected {
                line,
                reason: reasons.join("; "),
            });
        }
        Row::Customer(Customer {
            line,
            phone,
            email,
            dropped,
        })
    }
}

impl<R: Read> Iterator for CustomerList<R> {
    type Item = Result<Row, ListError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(s: &[u8], region: Option<&str>) -> Result<(Vec<Row>, Summary), ListError> {
        let list = CustomerList::new(s, region)?;
        let mut rows = Vec::new();
        let mut summary = Summary::default();
        for r in list {
            let r = r?;
            summary.add(&r);
            rows.push(r);
        }
        Ok((rows, summary))
    }

    #[test]
    fn rows_are_normalised_with_the_row_country_or_the_default_region() {
        let csv = "Phone , EMAIL,fn,ln,country,notes\n\
                   0812-3456-7890, Ana@Example.COM ,Ana,Putri,ID,vip\n\
                   (415) 555-0100,,Bo,,US,\n\
                   0812-3456-7891,,,,,\n\
                   not a number,bo@example.com,,,,\n\
                   not a number,not an email,,,,\n\
                   ,,Cy,,,\n";
        let list = CustomerList::new(csv.as_bytes(), Some("ID")).unwrap();
        assert_eq!(list.ignored, vec!["notes".to_owned()]);
        let (rows, summary) = read(csv.as_bytes(), Some("ID")).unwrap();
        assert_eq!(
            summary,
            Summary {
                rows: 6,
                valid_phones: 3,
                valid_emails: 2,
                rejected: 2
            }
        );
        let Row::Customer(ana) = &rows[0] else {
            panic!("{:?}", rows[0])
        };
        assert_eq!(ana.line, 2);
        assert_eq!(ana.phone.as_ref().unwrap().e164(), "+6281234567890");
        assert_eq!(ana.email.as_ref().unwrap().as_str(), "ana@example.com");
        let Row::Customer(bo) = &rows[1] else {
            panic!()
        };
        assert_eq!(bo.phone.as_ref().unwrap().e164(), "+14155550100");
        let Row::Customer(kept) = &rows[3] else {
            panic!()
        };
        assert_eq!(kept.dropped, vec!["phone"]);
        let Row::Rejected(r) = &rows[4] else { panic!() };
        assert_eq!(r.line, 6);
        assert!(r.reason.starts_with("phone: ") && r.reason.contains("; email: "));
        assert!(!r.reason.contains("not a number"), "no content in reasons");
        let Row::Rejected(r) = &rows[5] else { panic!() };
        assert_eq!(r.reason, "no phone number and no email");
    }

    #[test]
    fn unreadable_lists_say_why() {
        assert_eq!(read(b"", None).unwrap_err(), ListError::NoHeader);
        assert!(matches!(
            read(b"name,city\nx,y\n", None).unwrap_err(),
            ListError::NoIdentifierColumn(_)
        ));
        assert_eq!(
            read(b"phone;email\n+14155550100;a@b.co\n", None).unwrap_err(),
            ListError::WrongDelimiter("semicolon")
        );
        assert_eq!(
            read(b"phone\temail\n", None).unwrap_err(),
            ListError::WrongDelimiter("tab")
        );
        assert_eq!(read(b"phone,email\n", None).unwrap_err(), ListError::Empty);
        assert_eq!(
            read(b"phone,email\n\n\n", None).unwrap_err(),
            ListError::Empty
        );
        assert_eq!(
            read(b"phone,email\n+14155550100,a@b\xff.co\n", None).unwrap_err(),
            ListError::BadUtf8 { line: 2 }
        );
        let huge = format!("phone,email\n+14155550100,{}@b.co\n", "a".repeat(2000));
        assert_eq!(
            read(huge.as_bytes(), None).unwrap_err(),
            ListError::FieldTooLong { line: 2 }
        );
        let endless = format!("phone,email\n{}", "1".repeat(MAX_LINE_BYTES + 10));
        assert_eq!(
            read(endless.as_bytes(), None).unwrap_err(),
            ListError::LineTooLong { line: 2 }
        );
        assert!(matches!(
            read(b"phone,email\n+14155550100\n", None).unwrap_err(),
            ListError::Csv { line: 2, .. }
        ));
    }

    #[test]
    fn errors_never_quote_the_data() {
        let e = read(b"name,secret-column-ana@example.com\nx,y\n", None).unwrap_err();
        // The header's names are shown (they are the business's own
        // column names), cut short; row content never is.
        assert!(e.to_string().contains("secret-column"));
        let e = read(b"phone,email\n+14155550100,ana\xff@example.com\n", None).unwrap_err();
        assert!(!e.to_string().contains("ana"));
    }

    proptest! {
        /// Any bytes: an error or rows, never a panic; every row counted
        /// once; a customer always has an identifier.
        #[test]
        fn any_input_reads_or_fails_cleanly(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut input = b"phone,email,country\n".to_vec();
            input.extend_from_slice(&body);
            if let Ok(list) = CustomerList::new(&input[..], Some("US")) {
                let mut summary = Summary::default();
                for r in list {
                    match r {
                        Ok(row) => {
                            if let Row::Customer(c) = &row {
                                prop_assert!(c.phone.is_some() || c.email.is_some());
                            }
                            summary.add(&row);
                        }
                        Err(_) => break,
                    }
                }
                prop_assert!(summary.rejected <= summary.rows);
            }
        }
    }
}
