//! The CLI's diagnostics: `tracing` events on stderr, one line each. `NETVM_LOG` (an env-filter
//! directive list, e.g. `debug` or `netvm_observe=trace`) chooses what is shown; when it is
//! unset, `-v` does: info and above by default, debug with `-v`, trace with `-vv`. Results
//! (tables, CSV) stay on stdout, untouched by the filter.

use std::fmt;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The environment variable that overrides `-v`.
pub(crate) const ENV: &str = "NETVM_LOG";

/// Installs the subscriber for the process (once; later calls change nothing).
pub(crate) fn init(verbose: u8) {
    let _ = subscriber(verbose, std::io::stderr).try_init();
}

fn subscriber<W>(
    verbose: u8,
    writer: W,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    Plain,
    EnvFilter,
    W,
>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let default = match verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let filter = EnvFilter::builder()
        .with_default_directive(default.into())
        .with_env_var(ENV)
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .event_format(Plain)
}

/// One line per event, as the CLI wrote before it used `tracing`: the message alone for info
/// (progress) and errors (which name the subcommand and end it), `warning: `, `debug: ` or
/// `trace: ` before the others.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::WARN => "warning: ",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
            _ => "",
        };
        writer.write_str(prefix)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    fn logged(verbose: u8) -> String {
        let out = Captured::default();
        let subscriber = subscriber(verbose, out.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("netvm bench: connection refused");
            tracing::warn!("generator ceiling not measured");
            tracing::info!(rate = 5, "netvm bench: point done");
            tracing::debug!("QMP -> stop");
            tracing::trace!("every packet");
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn levels_are_shown_by_verbosity_and_formatted_plainly() {
        // NETVM_LOG would override -v; the test process must not have it set.
        assert!(
            std::env::var_os(ENV).is_none(),
            "unset {ENV} to run this test"
        );
        assert_eq!(
            logged(0),
            "netvm bench: connection refused\n\
             warning: generator ceiling not measured\n\
             netvm bench: point done rate=5\n"
        );
        assert!(logged(1).ends_with("warning: generator ceiling not measured\nnetvm bench: point done rate=5\ndebug: QMP -> stop\n"));
        assert!(logged(2).ends_with("debug: QMP -> stop\ntrace: every packet\n"));
    }
}
