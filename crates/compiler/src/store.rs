//! The API server's view of the input: objects by kind, namespace and
//! name, in creation order. `kubectl apply` creates or replaces objects
//! (a replaced object keeps its place, as it keeps its creation time);
//! `kubectl delete` removes them. The world is rebuilt from the store after
//! every change, so a change is whole objects, never files.

use std::fmt;

use meshsim_model::Resource;

/// What a change did to one object, as kubectl reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub what: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Configured,
    Deleted,
    /// `kubectl delete` of an object that does not exist.
    NotFound,
}

impl ObjectChange {
    fn new(r: &Resource, what: ChangeKind) -> Self {
        let m = r.meta();
        Self {
            kind: m.kind.clone(),
            api_version: m.api_version.clone(),
            namespace: m.ns().to_string(),
            name: m.name.clone(),
            what,
        }
    }

    /// kubectl's resource name: `virtualservice.networking.istio.io`,
    /// `service` (core kinds have no group).
    pub fn resource(&self) -> String {
        let kind = self.kind.to_ascii_lowercase();
        match self.api_version.split_once('/') {
            Some((group, _)) => format!("{kind}.{group}"),
            None => kind,
        }
    }
}

impl fmt::Display for ObjectChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.what {
            ChangeKind::Created => "created",
            ChangeKind::Configured => "configured",
            ChangeKind::Deleted => "deleted",
            ChangeKind::NotFound => {
                // kubectl: Error from server (NotFound): virtualservices.networking.istio.io "x" not found
                let r = self.resource();
                let plural = match r.split_once('.') {
                    Some((k, g)) => format!("{k}s.{g}"),
                    None => format!("{r}s"),
                };
                return write!(
                    f,
                    "Error from server (NotFound): {plural} {:?} not found",
                    self.name
                );
            }
        };
        write!(f, "{}/{} {verb}", self.resource(), self.name)
    }
}

/// Objects in creation order.
#[derive(Debug, Clone, Default)]
pub struct ConfigStore {
    objects: Vec<Resource>,
}

fn same_object(a: &Resource, b: &Resource) -> bool {
    let (a, b) = (a.meta(), b.meta());
    a.kind == b.kind && a.name == b.name && a.ns() == b.ns()
}

impl ConfigStore {
    pub fn new(objects: Vec<Resource>) -> Self {
        Self { objects }
    }

    pub fn resources(&self) -> &[Resource] {
        &self.objects
    }

    /// `kubectl apply`: creates each object, or replaces the one with its
    /// kind, namespace and name in place.
    pub fn apply(&mut self, batch: &[Resource]) -> Vec<ObjectChange> {
        batch
            .iter()
            .map(
                |r| match self.objects.iter_mut().find(|o| same_object(o, r)) {
                    Some(o) => {
                        *o = r.clone();
                        ObjectChange::new(r, ChangeKind::Configured)
                    }
                    None => {
                        self.objects.push(r.clone());
                        ObjectChange::new(r, ChangeKind::Created)
                    }
                },
            )
            .collect()
    }

    /// `kubectl delete`: removes each object named in the batch.
    pub fn delete(&mut self, batch: &[Resource]) -> Vec<ObjectChange> {
        batch
            .iter()
            .map(|r| {
                let before = self.objects.len();
                self.objects.retain(|o| !same_object(o, r));
                let what = if self.objects.len() < before {
                    ChangeKind::Deleted
                } else {
                    ChangeKind::NotFound
                };
                ObjectChange::new(r, what)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Vec<Resource> {
        let l = meshsim_model::parse_str("t.yaml", y);
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.resources
    }

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop, namespace: web}\nspec: {hosts: [shop]}\n";
    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: web}\nspec: {ports: [{port: 80}]}\n";

    #[test]
    fn apply_creates_then_configures_in_place_and_delete_removes() {
        let mut s = ConfigStore::default();
        let c = s.apply(&parse(&format!("{SVC}---\n{VS}")));
        let lines: Vec<String> = c.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "service/shop created",
                "virtualservice.networking.istio.io/shop created"
            ]
        );
        let c = s.apply(&parse(&VS.replace("[shop]", "[shop, shop.web]")));
        assert_eq!(c[0].what, ChangeKind::Configured);
        assert_eq!(s.resources().len(), 2);
        assert!(matches!(s.resources()[1], Resource::VirtualService(_)));
        let c = s.delete(&parse(VS));
        assert_eq!(
            c[0].to_string(),
            "virtualservice.networking.istio.io/shop deleted"
        );
        let c = s.delete(&parse(VS));
        assert_eq!(
            c[0].to_string(),
            "Error from server (NotFound): virtualservices.networking.istio.io \"shop\" not found"
        );
        assert_eq!(s.resources().len(), 1);
    }
}
