//! Deterministic, seeded datasets of the model for benchmarks and bulk
//! import (`warden import`). The same shape and seed always give the same
//! dataset, on every machine and with every version of the dependencies: the
//! random numbers come from SplitMix64 written out here, not from a library
//! whose generator may change.
//!
//! The data has the skew of a real installation: a few very large groups and
//! busy sites, many small ones; most users reach a handful of sites, a few
//! reach hundreds, and "agency" users reach 10,000 sites each; some owners, a
//! few all-sites grants, and reports written by users who can see their site.
//!
//! Pure: no I/O. The output is a [`Snapshot`], the shape storage loads the
//! index from, so that the same value can be imported into a database or
//! turned into an [`Index`](crate::index::Index) directly.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::model::{
    Action, Check, Grant, Group, GroupId, Level, Modules, Report, ReportId, Resource, Role, Site, SiteId, Subject,
    Target, Timestamp, User, UserId, Visibility,
};
use crate::store::Snapshot;

/// The named sizes of DESIGN §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetSize {
    /// 10k users, 1k sites, 100 groups, ~100k grants.
    S,
    /// 100k users, 10k sites, 1k groups, ~1M grants.
    M,
    /// 1M users, 100k sites, 10k groups, ~10M grants.
    Xl,
}

impl DatasetSize {
    pub const ALL: [DatasetSize; 3] = [DatasetSize::S, DatasetSize::M, DatasetSize::Xl];

    pub fn shape(self) -> Shape {
        match self {
            DatasetSize::S => Shape::with_users(10_000),
            DatasetSize::M => Shape::with_users(100_000),
            DatasetSize::Xl => Shape::with_users(1_000_000),
        }
    }
}

impl fmt::Display for DatasetSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetSize::S => "S",
            DatasetSize::M => "M",
            DatasetSize::Xl => "XL",
        })
    }
}

impl FromStr for DatasetSize {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.to_ascii_uppercase().as_str() {
            "S" => Ok(DatasetSize::S),
            "M" => Ok(DatasetSize::M),
            "XL" => Ok(DatasetSize::Xl),
            _ => Err(format!("unknown dataset size `{raw}`: use S, M or XL")),
        }
    }
}

/// How many of each thing a dataset holds; the grants follow from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub users: u32,
    pub sites: u32,
    pub groups: u32,
    /// The first users, by creation: owners hold every site already.
    pub owners: u32,
    /// Users (after the owners) with a direct grant on `agency_sites` sites each.
    pub agency_users: u32,
    pub agency_sites: u32,
    pub reports: u32,
}

impl Shape {
    /// The proportions of the named sizes for any number of users: a site per
    /// ten users, a group per hundred, about ten grants per user.
    pub fn with_users(users: u32) -> Shape {
        let users = users.max(10);
        let sites = (users / 10).max(1);
        Shape {
            users,
            sites,
            groups: (users / 100).max(1),
            owners: (users / 5_000).max(2),
            agency_users: (users / 100_000).max(1),
            agency_sites: sites.min(10_000),
            reports: sites * 3,
        }
    }
}

/// A generated dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub shape: Shape,
    pub seed: u64,
    /// Revision 0: the rows as an empty database would hold them after an import.
    pub snapshot: Snapshot,
    /// Users whose direct grants reach `shape.agency_sites` sites each: the
    /// largest `LookupSites` answers of the dataset.
    pub agency_users: Vec<UserId>,
}

/// All timestamps of a dataset count from here (2026-01-01T00:00:00Z), one
/// second per created row, so that a dataset never depends on the clock.
const EPOCH_MICROS: i64 = 1_767_225_600_000_000;

/// Kinds of ids, mixed into the id hash so that each kind has its own ids.
const USER_KIND: u64 = 1;
const SITE_KIND: u64 = 2;
const GROUP_KIND: u64 = 3;
const REPORT_KIND: u64 = 4;

/// Independent random streams, one per part of the dataset, so that changing
/// how one part is drawn does not change the others.
mod stream {
    pub const USERS: u64 = 11;
    pub const MEMBERSHIPS: u64 = 12;
    pub const USER_GRANTS: u64 = 13;
    pub const GROUP_GRANTS: u64 = 14;
    pub const ALL_SITES: u64 = 15;
    pub const REPORTS: u64 = 16;
    pub const GROUPS: u64 = 17;
}

impl Dataset {
    /// Generates the dataset of `shape` and `seed`.
    pub fn generate(shape: Shape, seed: u64) -> Dataset {
        let users = generate_users(shape, seed);
        let sites = (0..shape.sites).map(|i| site(seed, i)).collect();
        let groups = generate_groups(shape, seed);
        let memberships = generate_memberships(shape, seed);
        let (grants, agency_users) = generate_grants(shape, seed);
        let reports = generate_reports(shape, seed, &grants);
        let snapshot = Snapshot { revision: 0, users, sites, groups, memberships, grants, reports };
        Dataset { shape, seed, snapshot, agency_users }
    }

    /// `count` checks drawn like the traffic of analytics back-ends: mostly
    /// users on sites they were granted (directly or through a group), some
    /// on sites they cannot see, some on reports and on the instance; views
    /// far more often than edits. Deterministic in `seed`.
    pub fn sample_checks(&self, count: usize, seed: u64) -> Vec<Check> {
        let snapshot = &self.snapshot;
        let mut rng = Rng::new(seed, 0x5a3b);
        let user_grants: Vec<(UserId, SiteId)> = snapshot
            .grants
            .iter()
            .filter_map(|grant| match (grant.subject, grant.target) {
                (Subject::User(user), Target::Site(site)) => Some((user, site)),
                _ => None,
            })
            .collect();
        let mut group_sites: HashMap<GroupId, Vec<SiteId>> = HashMap::new();
        for grant in &snapshot.grants {
            if let (Subject::Group(group), Target::Site(site)) = (grant.subject, grant.target) {
                group_sites.entry(group).or_default().push(site);
            }
        }
        let pick_site = |rng: &mut Rng| snapshot.sites[rng.skewed(snapshot.sites.len())].id;
        let pick_user = |rng: &mut Rng| snapshot.users[rng.below(snapshot.users.len())].id;
        (0..count)
            .map(|_| {
                let action = pick_action(&mut rng);
                let roll = rng.unit();
                let (user, resource) = if roll < 0.60 && !user_grants.is_empty() {
                    let (user, site) = user_grants[rng.below(user_grants.len())];
                    (user, Resource::Site(site))
                } else if roll < 0.75 && !snapshot.memberships.is_empty() {
                    let (group, user) = snapshot.memberships[rng.below(snapshot.memberships.len())];
                    let site = match group_sites.get(&group) {
                        Some(sites) => sites[rng.below(sites.len())],
                        None => pick_site(&mut rng),
                    };
                    (user, Resource::Site(site))
                } else if roll < 0.90 || snapshot.reports.is_empty() {
                    (pick_user(&mut rng), Resource::Site(pick_site(&mut rng)))
                } else if roll < 0.95 {
                    let report = &snapshot.reports[rng.below(snapshot.reports.len())];
                    let user = if rng.chance(0.5) { report.author } else { pick_user(&mut rng) };
                    (user, Resource::Report(report.id))
                } else {
                    (pick_user(&mut rng), Resource::Instance)
                };
                Check { user, resource, action }
            })
            .collect()
    }

    /// How many grants of each kind: (site grants, all-sites grants).
    pub fn grant_counts(&self) -> (usize, usize) {
        let all_sites = self.snapshot.grants.iter().filter(|grant| grant.target == Target::AllSites).count();
        (self.snapshot.grants.len() - all_sites, all_sites)
    }
}

fn pick_action(rng: &mut Rng) -> Action {
    match rng.unit() {
        r if r < 0.70 => Action::View,
        r if r < 0.90 => Action::Edit,
        r if r < 0.95 => Action::Publish,
        r if r < 0.99 => Action::Manage,
        _ => Action::Delete,
    }
}

/// The id of the `index`-th entity of a kind: a version-4 UUID that looks
/// random but is a pure function of (seed, kind, index), so that a load
/// generator can name the users of a dataset without holding it.
pub fn entity_id(seed: u64, kind: u64, index: u32) -> Uuid {
    let key = mix(seed ^ mix(kind.wrapping_mul(0xA24B_AED4_963E_E407)));
    // `mix` is a bijection, so ids of one kind differ in their high half.
    let high = mix(key ^ u64::from(index));
    let low = mix(high ^ key.rotate_left(17));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

pub fn user_id(seed: u64, index: u32) -> UserId {
    UserId(entity_id(seed, USER_KIND, index))
}

pub fn site_id(seed: u64, index: u32) -> SiteId {
    SiteId(entity_id(seed, SITE_KIND, index))
}

pub fn group_id(seed: u64, index: u32) -> GroupId {
    GroupId(entity_id(seed, GROUP_KIND, index))
}

fn report_id(seed: u64, index: u32) -> ReportId {
    ReportId(entity_id(seed, REPORT_KIND, index))
}

fn created_at(index: u32) -> Timestamp {
    Timestamp(EPOCH_MICROS + i64::from(index) * 1_000_000)
}

const FIRST_NAMES: [&str; 24] = [
    "Aino", "Ben", "Carla", "Dmitri", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kaisa", "Luca", "Maja",
    "Nils", "Olga", "Pau", "Quentin", "Rosa", "Sven", "Tuuli", "Ulrich", "Vera", "Wim", "Zoe",
];
const LAST_NAMES: [&str; 24] = [
    "Andersson",
    "Berg",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hakala",
    "Ivanova",
    "Jansen",
    "Korhonen",
    "Lindqvist",
    "Martin",
    "Nieminen",
    "Olsen",
    "Peeters",
    "Quint",
    "Rossi",
    "Schmidt",
    "Torres",
    "Urban",
    "Virtanen",
    "Weber",
    "Young",
];
const DOMAINS: [&str; 6] =
    ["example.com", "example.org", "agency.example", "shop.example", "corp.example", "mail.example"];
/// Weighted towards English and German, as the suite's customers are.
const LANGUAGES: [&str; 10] = ["en", "en", "en", "en-US", "de", "de", "fi", "fr", "es", "sv"];
const DEPARTMENTS: [&str; 8] =
    ["Marketing", "Sales", "Support", "Engineering", "Analytics", "Content", "Legal", "Finance"];
const REGIONS: [&str; 6] = ["Nordics", "DACH", "Iberia", "Benelux", "France", "Global"];

fn generate_users(shape: Shape, seed: u64) -> Vec<User> {
    let mut rng = Rng::new(seed, stream::USERS);
    (0..shape.users)
        .map(|i| {
            let first = FIRST_NAMES[rng.below(FIRST_NAMES.len())];
            let last = LAST_NAMES[rng.below(LAST_NAMES.len())];
            let domain = DOMAINS[rng.below(DOMAINS.len())];
            let language = LANGUAGES[rng.below(LANGUAGES.len())];
            let at = created_at(i);
            User {
                id: user_id(seed, i),
                // The index makes every email unique.
                email: format!("{}.{}.{i}@{domain}", first.to_lowercase(), last.to_lowercase()),
                name: format!("{first} {last}"),
                language: language.to_owned(),
                role: if i < shape.owners { Role::Owner } else { Role::User },
                modules: Modules::default(),
                has_password: false,
                created_at: at,
                updated_at: at,
            }
        })
        .collect()
}

fn site(seed: u64, i: u32) -> Site {
    Site { id: site_id(seed, i), name: format!("site-{i}.example.com"), created_at: created_at(i) }
}

fn generate_groups(shape: Shape, seed: u64) -> Vec<Group> {
    let mut rng = Rng::new(seed, stream::GROUPS);
    (0..shape.groups)
        .map(|i| {
            let department = DEPARTMENTS[rng.below(DEPARTMENTS.len())];
            let region = REGIONS[rng.below(REGIONS.len())];
            Group {
                id: group_id(seed, i),
                // The index makes every name unique.
                name: format!("{department} {region} {i}"),
                description: format!("{department} team, {region}"),
                // Some groups come from the customer's identity provider.
                external_id: rng.chance(0.3).then(|| format!("idp-group-{i}")),
                created_at: created_at(i),
            }
        })
        .collect()
}

/// Each user is in 0 to 5 groups (one on average), picked with a skew that
/// makes the first groups large (at M, the largest has ~3k members) and most small.
fn generate_memberships(shape: Shape, seed: u64) -> Vec<(GroupId, UserId)> {
    let mut rng = Rng::new(seed, stream::MEMBERSHIPS);
    let groups = shape.groups as usize;
    let mut memberships = Vec::with_capacity(shape.users as usize * 11 / 10);
    let mut picked = Vec::new();
    for i in 0..shape.users {
        let count = match rng.unit() {
            r if r < 0.35 => 0,
            r if r < 0.75 => 1,
            r if r < 0.93 => 2,
            _ => 3 + rng.below(3),
        };
        pick_distinct(&mut rng, groups, count.min(groups), &mut picked);
        memberships.extend(picked.iter().map(|&g| (group_id(seed, g as u32), user_id(seed, i))));
    }
    memberships
}

/// The grants: all-sites grants first, then site grants (the order of
/// [`Snapshot::grants`]); and the agency users.
fn generate_grants(shape: Shape, seed: u64) -> (Vec<Grant>, Vec<UserId>) {
    let sites = shape.sites as usize;
    let mut all_sites = Vec::new();
    let mut site_grants = Vec::with_capacity(shape.users as usize * 10);
    let mut agency_users = Vec::new();

    // About one user in a thousand and one group in a hundred see everything.
    let mut rng = Rng::new(seed, stream::ALL_SITES);
    for i in shape.owners..shape.users {
        if rng.chance(0.001) {
            let level = if rng.chance(0.7) { Level::View } else { Level::Edit };
            all_sites.push(Grant { subject: Subject::User(user_id(seed, i)), target: Target::AllSites, level });
        }
    }
    for g in 0..shape.groups {
        // Not the largest groups: a wildcard on them would make most checks trivial.
        if g >= shape.groups / 10 && rng.chance(0.01) {
            let level = if rng.chance(0.8) { Level::View } else { Level::Edit };
            all_sites.push(Grant { subject: Subject::Group(group_id(seed, g)), target: Target::AllSites, level });
        }
    }

    let mut rng = Rng::new(seed, stream::USER_GRANTS);
    let mut picked = Vec::new();
    let agency_end = shape.owners.saturating_add(shape.agency_users).min(shape.users);
    for i in shape.owners..shape.users {
        let subject = Subject::User(user_id(seed, i));
        if i < agency_end {
            // An agency: View on `agency_sites` sites picked uniformly.
            agency_users.push(user_id(seed, i));
            sample_uniform(&mut rng, sites, (shape.agency_sites as usize).min(sites), &mut picked);
            site_grants.extend(picked.iter().map(|&s| Grant {
                subject,
                target: Target::Site(site_id(seed, s as u32)),
                level: Level::View,
            }));
            continue;
        }
        let count = match rng.unit() {
            r if r < 0.15 => 0,
            r if r < 0.80 => 1 + rng.below(10),
            r if r < 0.99 => 11 + rng.below(30),
            _ => 41 + rng.below(160),
        };
        pick_distinct(&mut rng, sites, count.min(sites.div_ceil(2)), &mut picked);
        for &s in &picked {
            let level = match rng.unit() {
                r if r < 0.60 => Level::View,
                r if r < 0.85 => Level::Edit,
                r if r < 0.95 => Level::EditPublish,
                _ => Level::Manage,
            };
            site_grants.push(Grant { subject, target: Target::Site(site_id(seed, s as u32)), level });
        }
    }

    let mut rng = Rng::new(seed, stream::GROUP_GRANTS);
    for g in 0..shape.groups {
        let subject = Subject::Group(group_id(seed, g));
        let count = match rng.unit() {
            r if r < 0.50 => 1 + rng.below(5),
            r if r < 0.90 => 6 + rng.below(25),
            _ => 31 + rng.below(170),
        };
        pick_distinct(&mut rng, sites, count.min(sites.div_ceil(2)), &mut picked);
        for &s in &picked {
            let level = match rng.unit() {
                r if r < 0.75 => Level::View,
                r if r < 0.95 => Level::Edit,
                _ => Level::EditPublish,
            };
            site_grants.push(Grant { subject, target: Target::Site(site_id(seed, s as u32)), level });
        }
    }

    all_sites.append(&mut site_grants);
    (all_sites, agency_users)
}

/// Reports on sites their author was granted directly, three per site on average.
fn generate_reports(shape: Shape, seed: u64, grants: &[Grant]) -> Vec<Report> {
    let mut rng = Rng::new(seed, stream::REPORTS);
    let authored: Vec<(UserId, SiteId)> = grants
        .iter()
        .filter_map(|grant| match (grant.subject, grant.target) {
            (Subject::User(user), Target::Site(site)) => Some((user, site)),
            _ => None,
        })
        .collect();
    if authored.is_empty() {
        return Vec::new();
    }
    (0..shape.reports)
        .map(|i| {
            let (author, site_id) = authored[rng.below(authored.len())];
            Report {
                id: report_id(seed, i),
                site_id,
                author,
                name: format!("Report {i}"),
                visibility: if rng.chance(0.6) { Visibility::AllUsers } else { Visibility::AuthorOnly },
                created_at: created_at(i),
            }
        })
        .collect()
}

/// Fills `picked` with `count` distinct indices below `n`, skewed towards
/// small indices (see [`Rng::skewed`]). Gives up on a pick after a bounded
/// number of collisions, so a very skewed draw may return a few fewer.
fn pick_distinct(rng: &mut Rng, n: usize, count: usize, picked: &mut Vec<usize>) {
    picked.clear();
    let mut attempts = 0;
    while picked.len() < count && attempts < count * 20 + 20 {
        attempts += 1;
        let candidate = rng.skewed(n);
        if !picked.contains(&candidate) {
            picked.push(candidate);
        }
    }
}

/// Fills `picked` with `count` distinct indices below `n`, uniformly
/// (a partial Fisher–Yates shuffle), in ascending order.
fn sample_uniform(rng: &mut Rng, n: usize, count: usize, picked: &mut Vec<usize>) {
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..count {
        let j = i + rng.below(n - i);
        all.swap(i, j);
    }
    all.truncate(count);
    all.sort_unstable();
    *picked = all;
}

/// SplitMix64's output function: a bijection of u64 that mixes well.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64: small, fast, and fixed forever, so datasets never change.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix(seed ^ mix(stream)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }

    /// In `0..n`, with density falling as 1/sqrt(i): the first 1% of the
    /// range draws 10% of the picks, the first one alone 1/sqrt(n) of them.
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * n as f64) as usize).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::index::Index;
    use crate::model::validate;

    fn small() -> Dataset {
        Dataset::generate(Shape::with_users(3_000), 7)
    }

    #[test]
    fn the_same_shape_and_seed_give_the_same_dataset() {
        assert_eq!(small(), small());
        let other = Dataset::generate(Shape::with_users(3_000), 8);
        assert_ne!(small().snapshot.users[0].id, other.snapshot.users[0].id);
    }

    #[test]
    fn the_named_sizes_have_the_documented_proportions() {
        let s = DatasetSize::S.shape();
        assert_eq!((s.users, s.sites, s.groups), (10_000, 1_000, 100));
        let xl = DatasetSize::Xl.shape();
        assert_eq!((xl.users, xl.sites, xl.groups, xl.agency_sites), (1_000_000, 100_000, 10_000, 10_000));
        assert_eq!("xl".parse(), Ok(DatasetSize::Xl));
        assert!("L".parse::<DatasetSize>().is_err());
    }

    #[test]
    fn a_dataset_is_valid_model_data() {
        let dataset = small();
        let snapshot = &dataset.snapshot;
        let emails: HashSet<String> = snapshot.users.iter().map(|u| validate::email_key(&u.email)).collect();
        assert_eq!(emails.len(), snapshot.users.len(), "emails are unique case-insensitively");
        for user in &snapshot.users {
            assert_eq!(validate::email("email", &user.email).as_deref(), Ok(user.email.as_str()));
            assert!(validate::language("language", &user.language).is_ok());
            assert!(validate::name("name", &user.name, true).is_ok());
        }
        let names: HashSet<String> = snapshot.groups.iter().map(|g| validate::group_name_key(&g.name)).collect();
        assert_eq!(names.len(), snapshot.groups.len(), "group names are unique case-insensitively");
        let external: Vec<&String> = snapshot.groups.iter().filter_map(|g| g.external_id.as_ref()).collect();
        assert_eq!(external.iter().collect::<HashSet<_>>().len(), external.len());

        let users: HashSet<UserId> = snapshot.users.iter().map(|u| u.id).collect();
        let sites: HashSet<SiteId> = snapshot.sites.iter().map(|s| s.id).collect();
        let groups: HashSet<GroupId> = snapshot.groups.iter().map(|g| g.id).collect();
        assert_eq!(users.len(), snapshot.users.len());
        assert_eq!(sites.len(), snapshot.sites.len());
        assert!(snapshot.memberships.iter().all(|(g, u)| groups.contains(g) && users.contains(u)));
        assert_eq!(snapshot.memberships.iter().collect::<HashSet<_>>().len(), snapshot.memberships.len());
        let mut keys = HashSet::new();
        for grant in &snapshot.grants {
            assert_ne!(grant.level, Level::NoAccess);
            assert!(keys.insert((grant.subject, grant.target)), "one grant per subject and target");
            match grant.subject {
                Subject::User(user) => assert!(users.contains(&user)),
                Subject::Group(group) => assert!(groups.contains(&group)),
            }
            if let Target::Site(site) = grant.target {
                assert!(sites.contains(&site));
            }
        }
        let first_site_grant = snapshot.grants.iter().position(|g| g.target != Target::AllSites);
        assert!(snapshot.grants[first_site_grant.unwrap_or(0)..].iter().all(|g| g.target != Target::AllSites));
        let owners = snapshot.users.iter().filter(|u| u.role == Role::Owner).count();
        assert_eq!(owners as u32, dataset.shape.owners);
        assert!(snapshot.reports.iter().all(|r| users.contains(&r.author) && sites.contains(&r.site_id)));
    }

    #[test]
    fn a_dataset_has_about_ten_grants_a_user_and_skewed_groups() {
        let dataset = small();
        let grants = dataset.snapshot.grants.len() as f64 / dataset.shape.users as f64;
        assert!((8.0..12.0).contains(&grants), "{grants} grants a user");
        let mut members: HashMap<GroupId, usize> = HashMap::new();
        for (group, _) in &dataset.snapshot.memberships {
            *members.entry(*group).or_default() += 1;
        }
        let largest = members.values().max().copied().unwrap_or(0);
        let median = {
            let mut sizes: Vec<usize> = members.values().copied().collect();
            sizes.sort_unstable();
            sizes[sizes.len() / 2]
        };
        assert!(largest > 5 * median, "largest group {largest}, median {median}");
    }

    #[test]
    fn agency_users_reach_their_sites() {
        let dataset = small();
        let index = Index::from_snapshot(&dataset.snapshot);
        let shape = dataset.shape;
        assert_eq!(dataset.agency_users.len(), shape.agency_users as usize);
        for user in &dataset.agency_users {
            let (sites, more) = index.lookup_sites(*user, Level::View, None, shape.sites as usize);
            assert!(!more);
            assert!(sites.len() >= shape.agency_sites as usize);
        }
    }

    #[test]
    fn sampled_checks_name_users_of_the_dataset_and_are_mostly_allowed() {
        let dataset = small();
        let index = Index::from_snapshot(&dataset.snapshot);
        let samples = dataset.sample_checks(2_000, 1);
        assert_eq!(samples, dataset.sample_checks(2_000, 1));
        let users: HashSet<UserId> = dataset.snapshot.users.iter().map(|u| u.id).collect();
        assert!(samples.iter().all(|s| users.contains(&s.user)));
        let allowed = samples.iter().filter(|s| index.decide(s.user, s.resource, s.action).allowed).count();
        assert!((600..1_900).contains(&allowed), "{allowed} of 2000 allowed");
    }
}
