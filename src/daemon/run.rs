//! Running the daemon: start-up in order, then serve until SIGTERM or SIGINT.

use super::Args;
use crate::config::{self, Config, PinError};
use crate::hsm::{Hsm, HsmConfig, HsmError};
use crate::service::{Service, ServiceError};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("configuration {path}:\n{problems}")]
    Config { path: String, problems: String },
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Hsm(#[from] HsmError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0}")]
    Startup(String),
}

/// Builds the runtime and runs the daemon; maps failure to a non-zero exit.
pub fn run_blocking(args: &Args) -> ExitCode {
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("byokd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args));
    // A start-up phase stopped by a signal may still run on a blocking thread (an HSM login
    // that does not return): the process does not wait for it.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "byokd stopped");
            eprintln!("byokd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long the runtime waits for its tasks when byokd stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

fn config_error(args: &Args, problems: &[config::Problem]) -> DaemonError {
    DaemonError::Config {
        path: args.config.display().to_string(),
        problems: problems
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Starts byokd and serves until a shutdown signal. The signal handlers are installed first: a
/// SIGTERM or SIGINT at any later point of start-up stops it at once.
pub async fn run(args: &Args) -> Result<(), DaemonError> {
    let started = std::time::Instant::now();
    let mut signals = ShutdownSignals::install()?;
    let notifier = std::sync::Arc::new(crate::system::Notifier::from_env());
    let startup = tokio::select! {
        up = start_up(args, &notifier) => up?,
        () = signals.wait() => {
            notifier.stopping();
            tracing::info!("byokd stopped by a signal during start-up");
            return Ok(());
        }
    };
    let Running {
        service,
        logs,
        control,
        _scheduler,
        _expiry,
    } = startup;
    let setting = service.designated_setting().await;
    if let Some(told) = setting.disagreement() {
        tracing::warn!(designated = setting.value, file = setting.file, "{told}");
    }
    let designated = setting.value;
    tracing::info!(
        designated,
        startup_ms = started.elapsed().as_millis(),
        "byokd ready"
    );
    notifier.ready(if designated {
        "ready (designated device)"
    } else {
        "ready (not designated: cloud jobs refused)"
    });
    let _watchdog = notifier.start_watchdog();
    signals.wait().await;
    notifier.stopping();
    if let Some(control) = control {
        control.shutdown(Duration::from_secs(5)).await;
    }
    tracing::info!(event = "system.stopping", "byokd stopping");
    if let Err(e) = logs.sync() {
        tracing::error!(error = %e, "the service log could not be synced at shutdown");
    }
    Ok(())
}

/// What start-up leaves running.
struct Running {
    service: Service,
    logs: crate::logs::Logs,
    control: Option<crate::control::ControlServer>,
    _scheduler: tokio::task::JoinHandle<()>,
    /// Ends the jobs of dual-control requests that expired.
    _expiry: tokio::task::JoinHandle<()>,
}

/// Every start-up phase up to serving, in order.
async fn start_up(args: &Args, notifier: &crate::system::Notifier) -> Result<Running, DaemonError> {
    // Even reading the configuration may block (a hung mount, a FIFO): on a blocking thread, so
    // the signal handlers keep working.
    let path = args.config.clone();
    let text = tokio::task::spawn_blocking(move || config::read_file(&path))
        .await
        .map_err(|e| DaemonError::Startup(format!("start-up task failed: {e}")))?
        .map_err(|p| config_error(args, &p))?;
    let found = config::inspect(&text);
    let config = match found.config.clone() {
        Some(c) if found.problems.is_empty() => c,
        _ => return Err(config_error(args, &found.problems)),
    };
    let hardening = crate::system::harden(&config, &args.config)
        .map_err(|e| DaemonError::Startup(e.to_string()))?;
    tracing::info!(mlock = ?hardening.mlock, "process hardened");
    let problems = super::preflight::files(&config, &found, config::PinOwner::ThisUser);
    if !problems.is_empty() {
        return Err(config_error(args, &problems));
    }
    notifier.status("logging in to the HSM and loading state");
    let log_settings = crate::logs::Settings::from_config(&config);
    // The daemon's one clock: the service, the jobs, the Azure client, dual control and the
    // service log all read the time from it.
    let clock = crate::clock::SystemClock::shared();
    let (service, _report) = start(config, clock.clone()).await?;
    // The service log is opened once the HSM login and the state load succeeded: nothing is
    // written (not even the log directory under the state directory) before that.
    let logs = crate::logs::Logs::open(&log_settings, clock)
        .map_err(|e| DaemonError::Startup(format!("{e}; check logs.dir and its permissions")))?;
    crate::logs::install(logs.clone());
    tracing::info!(event = "system.started", dir = %logs.dir().display(), "byokd {} started", env!("CARGO_PKG_VERSION"));
    let jobs = start_jobs(&service).await?;
    let window = service
        .config()
        .control
        .as_ref()
        .map_or(0, |c| c.approval_window_secs);
    let dual = crate::dual_control::DualControl::new(service.clone(), Some(jobs.clone()), window);
    // Pending approvals did not survive the restart: the jobs that waited for them end.
    dual.end_lost_waits().await;
    let _expiry = dual.spawn_expiry();
    if service.config().control.is_none() {
        tracing::warn!("{}", super::preflight::UNREACHABLE);
    }
    let control = crate::control::start(service.clone(), Some(jobs.clone()), dual)
        .await
        .map_err(|e| DaemonError::Startup(e.to_string()))?;
    jobs.resume_unfinished().await;
    // Missed rotations are due now and run once on the first tick.
    let scheduler = crate::jobs::Scheduler::new(jobs.clone()).await;
    let _scheduler = tokio::spawn(scheduler.run());
    Ok(Running {
        service,
        logs,
        control,
        _scheduler,
        _expiry,
    })
}

/// The Azure layer (allowlist from the configured cloud and the vaults groups name) and the job
/// runner.
async fn start_jobs(service: &Service) -> Result<crate::jobs::Jobs, DaemonError> {
    use crate::azure::{Allowlist, Azure, AzureMetrics};
    let cfg = &service.config().azure;
    // No vault by hand: the job runner makes the list follow the committed key groups.
    let allowlist = Allowlist::new(cfg.cloud, std::iter::empty::<&str>())
        .map_err(|e| DaemonError::Startup(format!("outbound allowlist: {e}")))?;
    let azure = Azure::new(
        cfg,
        std::sync::Arc::new(allowlist),
        AzureMetrics::new(),
        service.clock().clone(),
    )
    .map_err(|e| DaemonError::Startup(format!("Azure client: {e}")))?;
    match service.hsm().wrap_strategy() {
        Some(strategy) => tracing::info!(strategy = ?strategy, "BYOK wrap strategy chosen"),
        None => tracing::warn!(
            "no BYOK wrap strategy is available on this token: pushes will fail until one is (see byokctl status)"
        ),
    }
    Ok(crate::jobs::Jobs::new(
        service.clone(),
        std::sync::Arc::new(azure),
    ))
}

/// Start-up up to a ready service: PIN, HSM login, state. It runs on a blocking thread, so that
/// a slow HSM or a large state never holds up the runtime (and the signal handlers) meanwhile.
pub async fn start(
    config: Config,
    clock: crate::clock::SharedClock,
) -> Result<(Service, crate::store::LoadReport), DaemonError> {
    tokio::task::spawn_blocking(move || start_blocking(config, clock))
        .await
        .map_err(|e| DaemonError::Startup(format!("start-up task failed: {e}")))?
}

fn start_blocking(
    config: Config,
    clock: crate::clock::SharedClock,
) -> Result<(Service, crate::store::LoadReport), DaemonError> {
    let pin = config::read_pin(&config.hsm.pin_file)?;
    let hsm_config = HsmConfig {
        module: config.hsm.module.clone(),
        token_label: config.hsm.token_label.clone(),
        request_timeout: Duration::from_millis(config.limits.hsm_request_timeout_ms),
        allow_host_wrap: config.hsm.allow_host_wrap,
        sessions: config.hsm.sessions,
    };
    let (hsm, _report) = Hsm::start(&hsm_config, pin)?;
    Ok(Service::open(config, hsm, clock)?)
}

/// The shutdown signals, installed once before start-up so that a SIGTERM during start-up or
/// right after readiness is never lost.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self, DaemonError> {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate())
            .map_err(|e| DaemonError::Startup(format!("SIGTERM handler: {e}")))?;
        let int = signal(SignalKind::interrupt())
            .map_err(|e| DaemonError::Startup(format!("SIGINT handler: {e}")))?;
        Ok(Self { term, int })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// stderr (filtered by `BYOKD_LOG`) plus the service log's capture of events that carry an
/// `event` code (at INFO and above, whatever `BYOKD_LOG` says).
pub(super) fn init_tracing() {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("BYOKD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(crate::logs::capture::CaptureLayer.with_filter(LevelFilter::INFO))
        .try_init();
}
