//! RESP2/RESP3 (the Redis protocol), sans-IO. SKELETON: to be implemented.

/// Limits that keep a hostile or broken server from making us allocate.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest bulk string accepted (bytes).
    pub max_bulk: usize,
    /// Most elements in one aggregate (array, map, set, push).
    pub max_elements: usize,
    /// Deepest nesting of aggregates.
    pub max_depth: usize,
}

/// One parsed RESP value, borrowing strings from the input buffer.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// `+...`
    Simple(&'a [u8]),
    /// `-...` and RESP3 `!` bulk errors.
    Error(&'a [u8]),
    /// `:`
    Integer(i64),
    /// `$` and RESP3 `=` verbatim strings (the `txt:` prefix stripped).
    Bulk(&'a [u8]),
    /// `$-1`, `*-1` and RESP3 `_`.
    Null,
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `,`.
    Double(f64),
    /// RESP3 `(` big number, as its digits.
    BigNumber(&'a [u8]),
    /// `*` and RESP3 `~` sets.
    Array(Vec<Value<'a>>),
    /// RESP3 `%`, pairs in wire order.
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// RESP3 `>` out-of-band pushes (pub/sub messages arrive as these).
    Push(Vec<Value<'a>>),
}

/// Why a byte stream is not RESP (or breaks a limit): the connection must be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// Malformed input; the text says what and where.
    Malformed(String),
    /// A length, element count or depth over [`Limits`].
    TooLarge(String),
}

/// Parses one value from the start of `buf`: `Ok(None)` while incomplete,
/// `Ok(Some((value, consumed)))` when whole. RESP3 attributes (`|`) are skipped.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Option<(Value<'a>, usize)>, RespError> {
    let _ = (buf, limits);
    todo!()
}

/// Appends one command as a RESP array of bulk strings.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = (out, args);
    todo!()
}
