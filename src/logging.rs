//! Logs: the subscriber (human-readable, or one JSON object per line), its level from `RUST_LOG`
//! or `XS_APP_LOG_LEVEL`, and the access log line (target `access`). No token, cookie or secret is
//! ever a field of a log line: requests are logged by path (without the query), status, route
//! index, durations and correlation id.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The target of access log lines; `RUST_LOG=access=off` silences them too.
pub const ACCESS_TARGET: &str = "access";

/// The level filter from `RUST_LOG` (a tracing filter; it wins) or `XS_APP_LOG_LEVEL`, else
/// `info`. `XS_APP_LOG_LEVEL` takes the Node.js router's level names (`none`, `fatal`, `error`,
/// `warning`, `info`, `path`, `debug`, `verbose`, `silly`, any case) and tracing's own.
///
/// # Errors
/// A value that is neither, naming the variable.
pub fn filter_for(rust_log: Option<&str>, xs_app_log_level: Option<&str>) -> Result<EnvFilter, String> {
    if let Some(directives) = rust_log.filter(|text| !text.trim().is_empty()) {
        return EnvFilter::try_new(directives).map_err(|error| format!("RUST_LOG: {error}"));
    }
    let Some(level) = xs_app_log_level.map(str::trim).filter(|text| !text.is_empty()) else {
        return Ok(EnvFilter::new("info"));
    };
    let lower = level.to_ascii_lowercase();
    let directive = match lower.as_str() {
        "none" | "off" => "off",
        "fatal" | "error" => "error",
        "warning" | "warn" => "warn",
        "info" => "info",
        "path" | "debug" => "debug",
        "verbose" | "silly" | "trace" | "all" => "trace",
        // A bare word would be a target name to tracing, so only `target=level` lists pass.
        _ if level.contains('=') => {
            return EnvFilter::try_new(level).map_err(|error| format!("XS_APP_LOG_LEVEL: {error}"))
        }
        _ => {
            return Err(format!(
                "XS_APP_LOG_LEVEL: unknown level {level:?} (none, error, warning, info, path, debug, verbose, \
                 or a tracing filter such as approuter=debug)"
            ))
        }
    };
    Ok(EnvFilter::new(directive))
}

/// A subscriber writing to `writer`: JSON lines (timestamp, level, target, message and the
/// event's fields at the top level) or human-readable text without colours.
pub fn subscriber<W>(json: bool, filter: EnvFilter, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build(json, false, filter, writer)
}

fn build<W>(json: bool, colours: bool, filter: EnvFilter, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    if json {
        Box::new(builder.event_format(JsonLines).finish())
    } else if colours {
        Box::new(builder.with_ansi(true).finish())
    } else {
        Box::new(builder.event_format(TextLines).finish())
    }
}

// === impl TextLines ===

/// tracing-subscriber's plain text layout (`timestamp  LEVEL target: message name=value …`, strings
/// quoted), written straight into the line buffer: its own formatter cost several times more per
/// access log line (about 7% of the router's CPU under load).
struct TextLines;

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        write_timestamp(&mut writer, SystemTime::now())?;
        let level = match *metadata.level() {
            tracing::Level::TRACE => " TRACE ",
            tracing::Level::DEBUG => " DEBUG ",
            tracing::Level::INFO => "  INFO ",
            tracing::Level::WARN => "  WARN ",
            tracing::Level::ERROR => " ERROR ",
        };
        writer.write_str(level)?;
        writer.write_str(metadata.target())?;
        writer.write_str(":")?;
        let mut visitor = TextFields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str("\n")
    }
}

/// Writes the message as it is and every other field as ` name=value`.
struct TextFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl TextFields<'_, '_> {
    fn record(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self
                .writer
                .write_char(' ')
                .and_then(|()| {
                    if field.name() == "message" {
                        Ok(())
                    } else {
                        self.writer.write_str(field.name())?;
                        self.writer.write_char('=')
                    }
                })
                .and_then(|()| value(self.writer));
        }
    }
}

impl Visit for TextFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, |writer| write_text_string(writer, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |writer| write_u64(writer, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |writer| write!(writer, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |writer| writer.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |writer| write!(writer, "{value:?}"));
    }
}

// === impl JsonLines ===

/// One JSON object per event: `timestamp` (RFC 3339, UTC, microseconds), `level`, `target`, then
/// the event's fields (`message` among them) at the top level. Written straight into the line
/// buffer: tracing-subscriber's JSON formatter costs several times more per access log line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(metadata.level().as_str())?;
        writer.write_str("\",\"target\":")?;
        write_json_string(&mut writer, metadata.target())?;
        let mut visitor = JsonFields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct JsonFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.writer.write_char(',')?;
        write_json_string(self.writer, field.name())?;
        self.writer.write_char(':')
    }

    fn record(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.writer));
        }
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, |writer| write_json_string(writer, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |writer| write_u64(writer, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |writer| write!(writer, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |writer| writer.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.record(field, |writer| write!(writer, "{value}"));
        } else {
            self.record(field, |writer| write_json_string(writer, &value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |writer| {
            writer.write_char('"')?;
            write!(JsonEscape(writer), "{value:?}")?;
            writer.write_char('"')
        });
    }
}

/// A string as `{:?}` prints it; plain text (paths, ids) without its escaping machinery.
fn write_text_string(writer: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let plain = value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        writer.write_char('"')?;
        writer.write_str(value)?;
        writer.write_char('"')
    } else {
        write!(writer, "{value:?}")
    }
}

/// A `"…"` JSON string.
fn write_json_string(writer: &mut impl fmt::Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    JsonEscape(writer).write_str(text)?;
    writer.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string.
struct JsonEscape<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for JsonEscape<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(index) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
            self.0.write_str(&rest[..index])?;
            let c = rest[index..].chars().next().unwrap_or(' ');
            match c {
                '"' => self.0.write_str("\\\"")?,
                '\\' => self.0.write_str("\\\\")?,
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "\\u{:04x}", u32::from(other))?,
            }
            rest = &rest[index + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

thread_local! {
    /// The date and time of the last second formatted on this thread, up to the seconds: lines
    /// written in the same second reuse it (only the fraction is formatted for each).
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn write_timestamp(writer: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    // Digits by hand: the formatting machinery costs more than the rest of the line.
    let put = |text: &mut [u8; 27], at: usize, width: usize, mut value: u64| {
        for index in (at..at + width).rev() {
            text[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    let (cached_secs, cached) = SECOND.get();
    if cached_secs == secs {
        text[..19].copy_from_slice(&cached);
    } else {
        let (year, month, day) = civil_from_days(secs / 86_400);
        let time = secs % 86_400;
        put(&mut text, 0, 4, year);
        put(&mut text, 5, 2, month);
        put(&mut text, 8, 2, day);
        put(&mut text, 11, 2, time / 3600);
        put(&mut text, 14, 2, time % 3600 / 60);
        put(&mut text, 17, 2, time % 60);
        let mut second = [0; 19];
        second.copy_from_slice(&text[..19]);
        SECOND.set((secs, second));
    }
    put(&mut text, 20, 6, u64::from(since.subsec_micros()));
    writer.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// A decimal number without the formatting machinery.
fn write_u64(writer: &mut impl fmt::Write, mut value: u64) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    writer.write_str(std::str::from_utf8(&digits[start..]).map_err(|_| fmt::Error)?)
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Installs the process-wide subscriber writing to stderr through [`BufferedStderr`]; call
/// [`flush`] before the process exits.
pub fn init(json: bool, filter: EnvFilter) {
    let writer = BufferedStderr::start();
    // Colours only for a person at a terminal, never into a file or a log collector.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if tracing::subscriber::set_global_default(build(json, colours, filter, writer)).is_ok() && !colours {
        let _ = ACCESS_DIRECT.set(if json { Layout::Json } else { Layout::Text });
    }
    // A panic message must not overtake the log lines that led to it.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        previous(info);
    }));
}

/// Writes what is still buffered to stderr (at exit).
pub fn flush() {
    if let Some(buffer) = BUFFER.get() {
        buffer.drain();
    }
}

/// Lines are collected here and written by one thread, a batch at a time: with an access log
/// line per request, a `write(2)` per line would cost more than the request itself.
static BUFFER: OnceLock<LineBuffer> = OnceLock::new();

/// How often the writer thread empties the buffers.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Past this many buffered bytes a logging thread writes itself: memory stays bounded when stderr
/// is slower than the log.
const HIGH_WATER: usize = 256 * 1024;

type Shard = Arc<Mutex<Vec<u8>>>;

thread_local! {
    /// This thread's lines: only this thread and the writer (every 50 ms) touch it, so the lock is
    /// uncontended and the buffer stays in this core's cache.
    static LOCAL: RefCell<Option<Shard>> = const { RefCell::new(None) };
}

struct LineBuffer {
    /// Every thread's buffer; a buffer whose thread ended is dropped once written.
    shards: Mutex<Vec<Shard>>,
    /// The batch being written (its capacity is kept for the next one); held while writing, so
    /// batches reach stderr in order.
    output: Mutex<Vec<u8>>,
}

impl LineBuffer {
    /// Writes every thread's lines, thread by thread: lines of one thread stay in order, lines of
    /// different threads within one interval may not (each carries its timestamp).
    fn drain(&self) {
        let Ok(mut batch) = self.output.lock() else { return };
        let shards: Vec<Shard> = match self.shards.lock() {
            Ok(mut shards) => {
                shards
                    .retain(|shard| Arc::strong_count(shard) > 1 || shard.lock().is_ok_and(|lines| !lines.is_empty()));
                shards.clone()
            }
            Err(_) => return,
        };
        for shard in &shards {
            if let Ok(mut lines) = shard.lock() {
                batch.extend_from_slice(&lines);
                lines.clear();
                if lines.capacity() > 2 * HIGH_WATER {
                    lines.shrink_to(HIGH_WATER);
                }
            }
        }
        if !batch.is_empty() {
            // Nowhere to report a failing stderr.
            let _ = std::io::stderr().lock().write_all(&batch);
            batch.clear();
        }
        if batch.capacity() > 4 * HIGH_WATER {
            batch.shrink_to(HIGH_WATER);
        }
    }

    /// Appends to this thread's buffer; true when it is full.
    fn push(&'static self, bytes: &[u8]) -> std::io::Result<bool> {
        self.push_with(|lines| lines.extend_from_slice(bytes))
    }

    /// Lets `write` append to this thread's buffer; true when it is full.
    fn push_with(&'static self, write: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<bool> {
        let mut write = Some(write);
        let pushed = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            let shard = local.get_or_insert_with(|| {
                let shard: Shard = Arc::new(Mutex::new(Vec::with_capacity(16 * 1024)));
                if let Ok(mut shards) = self.shards.lock() {
                    shards.push(shard.clone());
                }
                shard
            });
            let mut lines = shard.lock().map_err(|_| std::io::Error::other("log buffer poisoned"))?;
            if let Some(write) = write.take() {
                write(&mut lines);
            }
            Ok(lines.len() >= HIGH_WATER)
        });
        match pushed {
            Ok(result) => result,
            // The thread is shutting down: its buffer is gone, write directly.
            Err(_) => {
                let mut line = Vec::new();
                if let Some(write) = write.take() {
                    write(&mut line);
                }
                std::io::stderr().write_all(&line).map(|()| false)
            }
        }
    }
}

/// A [`MakeWriter`] appending whole lines to a per-thread buffer that a background thread writes
/// to stderr every 50 ms. A log line reaches stderr at most that much later; [`flush`] at exit.
#[derive(Clone, Copy)]
pub struct BufferedStderr(&'static LineBuffer);

impl BufferedStderr {
    /// The process's buffers, starting the writer thread on first use.
    pub fn start() -> BufferedStderr {
        let mut started = false;
        let buffer = BUFFER.get_or_init(|| {
            started = true;
            LineBuffer {
                shards: Mutex::new(Vec::new()),
                output: Mutex::new(Vec::with_capacity(64 * 1024)),
            }
        });
        if started {
            let spawned = std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    buffer.drain();
                });
            if spawned.is_err() {
                eprintln!("approuter: cannot start the log writer thread; logs are written when a buffer fills");
            }
        }
        BufferedStderr(buffer)
    }
}

impl std::io::Write for BufferedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.push(bytes)? {
            self.0.drain();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = BufferedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// What the access log says about one request.
pub struct AccessRecord<'a> {
    pub method: &'a http::Method,
    /// The path without the query (queries carry codes and states).
    pub path: &'a str,
    pub status: u16,
    pub route: Option<usize>,
    pub correlation_id: &'a http::HeaderValue,
    pub duration_us: u64,
    pub upstream_us: Option<u64>,
}

/// Writes the access log line of one request at info level, target [`ACCESS_TARGET`].
///
/// With the process-wide subscriber of [`init`] the line is written straight into the line
/// buffer, in that subscriber's layout and under its filter: the event machinery cost about a
/// tenth of the router's own CPU time per proxied request.
pub fn access(record: &AccessRecord<'_>) {
    if let (Some(&layout), Some(buffer)) = (ACCESS_DIRECT.get(), BUFFER.get()) {
        if tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            let full = buffer.push_with(|lines| {
                let _ = write_access(&mut VecText(lines), layout, SystemTime::now(), record);
            });
            if matches!(full, Ok(true)) {
                buffer.drain();
            }
        }
        return;
    }
    tracing::info!(
        target: ACCESS_TARGET,
        correlation_id = record.correlation_id.to_str().unwrap_or("-"),
        method = record.method.as_str(),
        path = record.path,
        status = record.status,
        route = record.route,
        duration_us = record.duration_us,
        upstream_us = record.upstream_us,
        "request"
    );
}

/// The layout of the process-wide subscriber, when access lines bypass it (see [`access`]).
static ACCESS_DIRECT: OnceLock<Layout> = OnceLock::new();

#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    Text,
    Json,
}

/// The access line exactly as [`TextLines`] or [`JsonLines`] write the event of [`access`]
/// (a test holds them together).
fn write_access(out: &mut impl fmt::Write, layout: Layout, now: SystemTime, record: &AccessRecord<'_>) -> fmt::Result {
    enum Value<'a> {
        Text(&'a str),
        Number(u64),
    }
    // The event's fields in the order `access` records them; `None` is left out, as tracing does.
    // Each field's separator and name are one piece per layout: the line is written in few, larger
    // pieces (each piece is a copy call).
    let fields = [
        (
            (" correlation_id=", ",\"correlation_id\":"),
            Some(Value::Text(record.correlation_id.to_str().unwrap_or("-"))),
        ),
        ((" method=", ",\"method\":"), Some(Value::Text(record.method.as_str()))),
        ((" path=", ",\"path\":"), Some(Value::Text(record.path))),
        (
            (" status=", ",\"status\":"),
            Some(Value::Number(u64::from(record.status))),
        ),
        (
            (" route=", ",\"route\":"),
            record.route.map(|route| Value::Number(route as u64)),
        ),
        (
            (" duration_us=", ",\"duration_us\":"),
            Some(Value::Number(record.duration_us)),
        ),
        (
            (" upstream_us=", ",\"upstream_us\":"),
            record.upstream_us.map(Value::Number),
        ),
    ];
    match layout {
        Layout::Text => {
            write_timestamp(out, now)?;
            out.write_str("  INFO access: request")?;
        }
        Layout::Json => {
            out.write_str("{\"timestamp\":\"")?;
            write_timestamp(out, now)?;
            out.write_str("\",\"level\":\"INFO\",\"target\":\"access\",\"message\":\"request\"")?;
        }
    }
    for ((text_name, json_name), value) in fields {
        let Some(value) = value else { continue };
        out.write_str(match layout {
            Layout::Text => text_name,
            Layout::Json => json_name,
        })?;
        match (value, layout) {
            (Value::Number(number), _) => write_u64(out, number)?,
            (Value::Text(text), Layout::Text) => write_text_string(out, text)?,
            (Value::Text(text), Layout::Json) => write_json_string(out, text)?,
        }
    }
    out.write_str(match layout {
        Layout::Text => "\n",
        Layout::Json => "}\n",
    })
}

/// `fmt::Write` into a byte buffer.
struct VecText<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecText<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }

    // A quote is one byte pushed, not a copy call.
    fn write_char(&mut self, c: char) -> fmt::Result {
        if c.is_ascii() {
            self.0.push(c as u8);
            Ok(())
        } else {
            self.write_str(c.encode_utf8(&mut [0; 4]))
        }
    }
}

#[cfg(test)]
mod tests;
