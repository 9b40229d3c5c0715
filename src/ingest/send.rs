//! `tickvault ingest`: sends NDJSON or CSV to a server's `POST /v1/write` in chunks of whole
//! lines (CSV chunks repeat the header), stopping at the first refused chunk.

use std::io::Read;

use anyhow::{Context, bail};

use crate::cli::IngestArgs;

/// Splits `input` at line ends into pieces of at most `limit` bytes (a longer line is a piece
/// of its own); `header` is put before every piece.
fn chunks<'a>(input: &'a [u8], header: &'a [u8], limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
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
        out.push(piece);
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
            q.append_pair("interval", i);
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
    for (i, piece) in pieces.into_iter().enumerate() {
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
            bail!(
                "chunk {} of {} refused ({status}): {text}; {rows} rows of earlier chunks were written",
                i + 1,
                count
            );
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        rows += answer["rows"].as_u64().unwrap_or(0);
    }
    eprintln!("ingested {rows} rows in {count} request(s)");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_split_at_line_ends_and_repeat_the_header() {
        let input = b"a,1\nb,2\nc,3\n";
        let pieces = chunks(input, b"h\n", 10);
        assert_eq!(
            pieces,
            vec![b"h\na,1\nb,2\n".to_vec(), b"h\nc,3\n".to_vec()]
        );
        let whole = chunks(input, b"", 1 << 20);
        assert_eq!(whole, vec![input.to_vec()]);
        // A line longer than the limit travels alone.
        assert_eq!(chunks(b"long-line\nx\n", b"", 4).len(), 2);
    }
}
