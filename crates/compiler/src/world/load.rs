//! The one way every caller turns files into a world: load the YAML (with
//! `-n` applied as kubectl or istioctl would), build the world, and hand
//! back every diagnostic together. The CLI, the scenario runner, the control
//! plane, the proxy process, tests and benches all come through here.

use std::path::Path;

use meshsim_model::{Diagnostics, Resource};

use super::*;

/// What `-n NAMESPACE` means for the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NamespaceFlag {
    /// No `-n`: objects without a namespace are in `default`.
    #[default]
    Unset,
    /// `kubectl apply -n NS`: objects without a namespace go to NS, and one
    /// that names another namespace is kubectl's error.
    Apply(String),
    /// `istioctl analyze -n NS`: objects without a namespace go to NS;
    /// objects in other namespaces are kept.
    Select(String),
}

impl NamespaceFlag {
    /// The namespace of a proxy or pod named without one (`istioctl -n`).
    pub fn namespace(&self) -> &str {
        match self {
            NamespaceFlag::Unset => "default",
            NamespaceFlag::Apply(n) | NamespaceFlag::Select(n) => n,
        }
    }

    /// Applies the flag to freshly loaded resources.
    pub fn apply_to(&self, loaded: &mut meshsim_model::Loaded) {
        match self {
            NamespaceFlag::Unset => {}
            NamespaceFlag::Apply(ns) => loaded.apply_namespace(ns, true),
            NamespaceFlag::Select(ns) => loaded.apply_namespace(ns, false),
        }
    }
}

impl World {
    /// Loads files and directories and builds the world from them. Parse
    /// errors and build errors come back together; the world is built from
    /// whatever parsed, so a caller decides whether errors stop it.
    pub fn load<P: AsRef<Path>>(
        paths: &[P],
        settings: Settings,
        namespace: &NamespaceFlag,
    ) -> (World, Diagnostics) {
        World::from_loaded(meshsim_model::load_paths(paths), settings, namespace)
    }

    /// [`World::load`] for resources already read (stdin, text in a test).
    pub fn from_loaded(
        mut loaded: meshsim_model::Loaded,
        mut settings: Settings,
        namespace: &NamespaceFlag,
    ) -> (World, Diagnostics) {
        namespace.apply_to(&mut loaded);
        settings.default_namespace = namespace.namespace().to_string();
        let mut diags = Diagnostics::from(loaded.diagnostics);
        let (world, more) = World::build(&loaded.resources, settings);
        diags.extend(more);
        (world, diags)
    }

    /// Builds the world for `resources` as a change to `previous`: pods and
    /// Services that exist in both keep their IPs, as they do in a cluster
    /// when other objects are applied.
    pub fn rebuild(
        resources: &[Resource],
        settings: Settings,
        previous: &World,
    ) -> (World, Vec<Diagnostic>) {
        World::build_with(resources, settings, Some(previous))
    }
}
