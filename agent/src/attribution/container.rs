//! Which container a process runs in, from its cgroup path.
//!
//! Container runtimes name a container's cgroup after its 64-hex-digit id,
//! in one of a few shapes (cgroup v1 and v2, systemd or cgroupfs driver):
//! - docker:      `/docker/<id>`, `/system.slice/docker-<id>.scope`
//! - containerd:  `/kubepods/burstable/pod<uid>/<id>`,
//!   `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
//! - cri-o:       `.../crio-<id>.scope`, `/kubepods/.../crio-<id>`
//! - podman:      `/machine.slice/libpod-<id>.scope`
//!
//! The pod uid of a Kubernetes container is in its cgroup path too, with
//! dashes as underscores in the systemd form.

/// A container as its cgroup path tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The 64-hex-digit container id.
    pub id: String,
    /// `docker`, `containerd`, `cri-o`, `podman`, or `unknown`.
    pub runtime: &'static str,
    /// The Kubernetes pod uid, for containers of a pod.
    pub pod_uid: Option<String>,
}

impl Container {
    /// Parses a `/proc/PID/cgroup` file (`None` for a process on the host):
    /// the first line whose path names a container wins (cgroup v1 lists a
    /// path per hierarchy, v2 just one).
    pub fn from_cgroup_file(text: &str) -> Option<Container> {
        text.lines().filter_map(|line| line.splitn(3, ':').nth(2)).find_map(Container::from_cgroup_path)
    }

    /// Parses one cgroup path.
    pub fn from_cgroup_path(path: &str) -> Option<Container> {
        let (segment, id) = path.split('/').rev().find_map(|segment| Some((segment, container_id(segment)?)))?;
        let runtime = match segment {
            s if s.starts_with("docker") => "docker",
            s if s.starts_with("cri-containerd") => "containerd",
            s if s.starts_with("crio") => "cri-o",
            s if s.starts_with("libpod") => "podman",
            _ if path.contains("/docker/") => "docker",
            _ if path.contains("kubepods") => "containerd",
            _ => "unknown",
        };
        Some(Container { id: id.to_owned(), runtime, pod_uid: pod_uid(path) })
    }
}

/// The 64-hex-digit id in one path segment such as `docker-<id>.scope`.
fn container_id(segment: &str) -> Option<&str> {
    let name = segment.strip_suffix(".scope").unwrap_or(segment);
    let id = name.rsplit(['-', ':']).next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The pod uid of a `pod<uid>` segment (`-pod<uid>.slice` in the systemd form).
fn pod_uid(path: &str) -> Option<String> {
    path.split('/').find_map(|segment| {
        let name = segment.strip_suffix(".slice").unwrap_or(segment);
        let uid = name.rsplit_once("-pod").map(|(_, uid)| uid).or_else(|| name.strip_prefix("pod"))?;
        (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_'))
            .then(|| uid.replace('_', "-"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f8b3b1c0f2a4a6bb1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192";
    const UID: &str = "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6";

    fn parsed(path: &str) -> Option<(String, &'static str, Option<String>)> {
        Container::from_cgroup_path(path).map(|c| (c.id, c.runtime, c.pod_uid))
    }

    #[test]
    fn docker_shapes() {
        let expected = Some((ID.to_owned(), "docker", None));
        assert_eq!(parsed(&format!("/docker/{ID}")), expected);
        assert_eq!(parsed(&format!("/system.slice/docker-{ID}.scope")), expected);
    }

    #[test]
    fn kubernetes_shapes() {
        let uid = Some(UID.to_owned());
        assert_eq!(
            parsed(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            Some((ID.to_owned(), "containerd", uid.clone()))
        );
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        assert_eq!(parsed(&systemd), Some((ID.to_owned(), "containerd", uid.clone())));
        let crio = format!("/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope", UID.replace('-', "_"));
        assert_eq!(parsed(&crio), Some((ID.to_owned(), "cri-o", uid)));
    }

    #[test]
    fn podman_shape() {
        assert_eq!(parsed(&format!("/machine.slice/libpod-{ID}.scope")), Some((ID.to_owned(), "podman", None)));
    }

    #[test]
    fn host_processes_have_none() {
        assert_eq!(parsed("/"), None);
        assert_eq!(parsed("/user.slice/user-1000.slice/session-2.scope"), None);
        // 32 hex digits is no container id.
        assert_eq!(parsed("/process_api/a70ba4af201b0c96f2ba52f31e608727"), None);
    }

    #[test]
    fn cgroup_v1_file_takes_the_first_container_line() {
        let file = format!("12:pids:/\n4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
        assert_eq!(Container::from_cgroup_file(&file).map(|c| c.id), Some(ID.to_owned()));
        assert_eq!(Container::from_cgroup_file("0::/\n"), None);
        assert_eq!(Container::from_cgroup_file("garbage"), None);
    }
}
