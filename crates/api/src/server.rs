//! Running the HTTP server with its workers and sweepers: shared by
//! `imagegate serve` and the test harness, so tests run what ships.

use tokio::net::TcpListener;

use crate::routes::router;
use crate::state::AppState;

/// Starts the queue's workers and sweepers, then serves HTTP on `listener`
/// until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let mut background = state.queue.spawn_workers();
    background.extend(state.queue.spawn_sweepers());
    let app = router(state);
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    for h in background {
        h.abort();
    }
    result
}
