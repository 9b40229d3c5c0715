//! `tickvault ingest`: sends NDJSON or CSV to a server's `POST /v1/write` in chunks of whole
//! lines (CSV chunks repeat the header), stopping at the first refused chunk.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "TICKVAULT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// A bearer token with write scope.
    #[arg(long, env = "TICKVAULT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Body format [default: by the file name, .csv is csv, anything else ndjson].
    #[arg(long, value_parser = ["ndjson", "csv"])]
    pub format: Option<String>,
    /// CSV: the bars' timeframe (NDJSON rows carry their own; `--interval` is its old name).
    #[arg(long = "timeframe", alias = "interval")]
    pub interval: Option<String>,
    /// CSV without a symbol column: the symbol.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Largest request; bigger input is sent in several requests of whole lines, each all or
    /// nothing (keep it under the server's max_body).
    #[arg(long, default_value = "8MiB")]
    pub chunk: crate::config::ByteSize,
    /// The file to send, or - for standard input.
    #[arg(default_value = "-")]
    pub file: PathBuf,
}

/// Splits `input` at line ends into pieces of at most `limit` bytes (a longer line is a piece
/// of its own); `header` is put before every piece. Each piece comes with the 0-based index,
/// within `input`, of its first line.
fn chunks<'a>(input: &'a [u8], header: &'a [u8], limit: usize) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut first_line = 0u64;
    while start < input.len() {
        let budget = limit.saturating_sub(header.len()).max(1);
        let mut end = (start + budget).min(input.len());
        if end < input.len() {
            end = match input[start..end].iter().rposition(|&b| b == b'\n') {
                Some(i) => start + i + 1,
                None => input[end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(input.len(), |i| end + i + 1),
            };
        }
        let mut piece = Vec::with_capacity(header.len() + end - start);
        piece.extend_from_slice(header);
        piece.extend_from_slice(&input[start..end]);
        out.push((piece, first_line));
        first_line += input[start..end].iter().filter(|&&b| b == b'\n').count() as u64;
        start = end;
    }
    out
}

pub async fn ingest_cmd(args: IngestArgs) -> anyhow::Result<i32> {
    let mut input = Vec::new();
    let from_stdin = args.file.as_os_str() == "-";
    if from_stdin {
        std::io::stdin().read_to_end(&mut input)?;
    } else {
        input = std::fs::read(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
    }
    let csv = match args.format.as_deref() {
        Some(f) => f == "csv",
        None => {
            !from_stdin
                && args
                    .file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        }
    };
    let (header, body): (&[u8], &[u8]) = if csv {
        let end = input
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |i| i + 1);
        input.split_at(end)
    } else {
        (&[], &input)
    };
    let content_type = if csv {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    let mut url = reqwest::Url::parse(&args.server)
        .with_context(|| format!("--server {:?}", args.server))?
        .join("/v1/write")?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(i) = &args.interval {
            q.append_pair("timeframe", i);
        }
        if let Some(s) = &args.symbol {
            q.append_pair("symbol", s);
        }
    }
    let client = reqwest::Client::new();
    let limit = usize::try_from(args.chunk.0).unwrap_or(usize::MAX);
    let mut rows = 0u64;
    let pieces = chunks(body, header, limit);
    let count = pieces.len();
    let header_lines = u64::from(!header.is_empty());
    let source = if from_stdin {
        "standard input".to_string()
    } else {
        args.file.display().to_string()
    };
    for (i, (piece, first_line)) in pieces.into_iter().enumerate() {
        let mut request = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(piece);
        if let Some(t) = &args.token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("sending to {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(text);
            let message = message.strip_prefix("body ").unwrap_or(&message);
            // The server numbers the lines of the chunk it got; the reader wants the file's.
            let message = to_file_lines(message, header_lines + first_line, header_lines);
            bail!(
                "{source}: {message} (chunk {} of {count} refused with {status}; {rows} rows of \
                 earlier chunks were written)",
                i + 1
            );
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        rows += answer["rows"].as_u64().unwrap_or(0);
    }
    eprintln!("ingested {rows} rows in {count} request(s)");
    Ok(0)
}

/// Rewrites the first `line N` of a server message about a chunk into the input's line: the
/// chunk's line `header_lines + 1` is the input's line `first_line + 1` (the header, when
/// there is one, is line 1 of both).
fn to_file_lines(message: &str, first_line: u64, header_lines: u64) -> String {
    let re = regex::Regex::new(r"\bline (\d+)\b").expect("valid regex");
    re.replace(message, |c: &regex::Captures| {
        let n: u64 = c[1].parse().unwrap_or(0);
        let line = if n > header_lines {
            first_line + (n - header_lines)
        } else {
            n
        };
        format!("line {line}")
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::{chunks, to_file_lines};

    #[test]
    fn chunks_split_at_line_ends_and_repeat_the_header() {
        let input = b"a,1\nb,2\nc,3\n";
        let pieces = chunks(input, b"h\n", 10);
        assert_eq!(
            pieces,
            vec![(b"h\na,1\nb,2\n".to_vec(), 0), (b"h\nc,3\n".to_vec(), 2)]
        );
        let whole = chunks(input, b"", 1 << 20);
        assert_eq!(whole, vec![(input.to_vec(), 0)]);
        // A line longer than the limit travels alone.
        assert_eq!(chunks(b"long-line\nx\n", b"", 4).len(), 2);
    }

    #[test]
    fn chunk_lines_become_input_lines() {
        // NDJSON: the chunk starting at the input's 101st line calls it line 1.
        assert_eq!(
            to_file_lines("line 3: high is below low", 100, 0),
            "line 103: high is below low"
        );
        // CSV: each chunk repeats the header as its line 1; the chunk's line 2 is the first
        // row after the 41 lines (header included) of earlier chunks and the header.
        assert_eq!(
            to_file_lines("body line 2: high is below low", 41, 1),
            "body line 42: high is below low"
        );
        assert_eq!(
            to_file_lines("body line 1: bad header", 41, 1),
            "body line 1: bad header"
        );
        assert_eq!(to_file_lines("no line here", 5, 0), "no line here");
    }
}
