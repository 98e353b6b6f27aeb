//! Running the HTTP server with its workers and sweepers: shared by
//! `imagegate serve` and the test harness, so tests run what ships.

use tokio::net::TcpListener;

use crate::routes::router;
use crate::state::AppState;

/// Starts the queue's workers and sweepers, then serves HTTP on `listener`
/// until `shutdown` resolves. Then it stops accepting connections and
/// drains: workers claim nothing more, runs in flight get the queue's drain
/// time to finish, and what is still running after it goes back to the
/// queue (see the queue's `drain`). It returns once requests and runs are
/// done.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let queue = state.queue.clone();
    let workers = queue.spawn_workers();
    let sweepers = queue.spawn_sweepers();
    let app = router(state);
    let quiet = {
        let queue = queue.clone();
        async move {
            shutdown.await;
            // Requests in flight may be waiting on runs: the drain must start
            // now, alongside the server's, not after it.
            queue.begin_shutdown();
        }
    };
    let result = axum::serve(listener, app).with_graceful_shutdown(quiet).await;
    queue.begin_shutdown();
    queue.drained(workers).await;
    for h in sweepers {
        h.abort();
    }
    result
}
