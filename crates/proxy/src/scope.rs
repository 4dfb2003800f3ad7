//! Task ownership. Every task the data plane spawns — accept loops,
//! connections, upstream connection drivers, delayed pushes — is spawned
//! into a [`Scope`] whose owner ends it: a proxy owns its listeners and
//! connections, the mesh owns its proxies and apps. Shutting a scope down
//! cancels its tasks (dropping their sockets) and waits for them, including
//! the tasks of its child scopes (mini-redis' `server::run(listener,
//! shutdown)` pattern, with tokio-util's cancellation token and task
//! tracker).

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A set of tasks with one owner. Cheap to clone; clones share the scope.
#[derive(Clone, Debug)]
pub struct Scope {
    token: CancellationToken,
    /// This scope's tracker first, then its ancestors': a task counts in
    /// every scope above it, so a parent's shutdown waits for it too.
    trackers: Arc<[TaskTracker]>,
}

impl Default for Scope {
    fn default() -> Self {
        Self::new()
    }
}

impl Scope {
    /// A root scope.
    pub fn new() -> Self {
        Self {
            token: CancellationToken::new(),
            trackers: Arc::from(vec![TaskTracker::new()]),
        }
    }

    /// A scope that ends with this one, and can also be ended alone.
    pub fn child(&self) -> Scope {
        let mut trackers = vec![TaskTracker::new()];
        trackers.extend(self.trackers.iter().cloned());
        Self {
            token: self.token.child_token(),
            trackers: Arc::from(trackers),
        }
    }

    /// Spawns `fut` in this scope: it is dropped (its sockets closed) when
    /// the scope shuts down. Outside a running scope it is not started.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.token.is_cancelled() {
            return;
        }
        let token = self.token.clone();
        let fut = async move {
            tokio::select! {
                biased;
                _ = token.cancelled() => {}
                _ = fut => {}
            }
        };
        let mut trackers = self.trackers.iter().rev();
        let Some(root) = trackers.next() else { return };
        // Nest the tracking so every ancestor counts the task.
        let mut boxed: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(fut);
        for t in self.trackers.iter().take(self.trackers.len() - 1) {
            boxed = Box::pin(t.track_future(boxed));
        }
        root.spawn(boxed);
    }

    /// Resolves when the scope is shut down.
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    pub fn is_shut_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Ends every task of this scope and its children without waiting
    /// (what `Drop` of an owner does).
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// Ends every task of this scope and its children and waits until they
    /// are gone, so every socket they held is closed.
    pub async fn shutdown(&self) {
        self.token.cancel();
        if let Some(own) = self.trackers.first() {
            own.close();
            own.wait().await;
        }
    }
}

/// hyper spawns HTTP/2 streams and client connection drivers through an
/// executor: they belong to the scope too.
impl<F> hyper::rt::Executor<F> for Scope
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.spawn(fut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Alive(Arc<AtomicUsize>);
    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn shutdown_ends_tasks_of_the_scope_and_its_children() {
        let alive = Arc::new(AtomicUsize::new(0));
        let root = Scope::new();
        let child = root.child();
        for s in [&root, &child, &child.child()] {
            alive.fetch_add(1, Ordering::SeqCst);
            let a = Alive(alive.clone());
            s.spawn(async move {
                let _a = a;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
        tokio::task::yield_now().await;
        assert_eq!(alive.load(Ordering::SeqCst), 3);
        root.shutdown().await;
        assert_eq!(alive.load(Ordering::SeqCst), 0);
        // A shut-down scope starts nothing new.
        child.spawn(async {});
    }

    #[tokio::test]
    async fn a_child_ends_alone() {
        let root = Scope::new();
        let child = root.child();
        let alive = Arc::new(AtomicUsize::new(2));
        for s in [&root, &child] {
            let a = Alive(alive.clone());
            s.spawn(async move {
                let _a = a;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
        child.shutdown().await;
        assert_eq!(alive.load(Ordering::SeqCst), 1);
        assert!(!root.is_shut_down());
        root.shutdown().await;
        assert_eq!(alive.load(Ordering::SeqCst), 0);
    }
}
