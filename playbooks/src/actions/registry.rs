//! The one registration point of actions: `register_actions!` turns the list of actions
//! into the step's YAML form ([`Step`](super::Step)), the borrowed step action
//! ([`StepAction`](super::StepAction)), the typed plan of any action
//! ([`Plan`](super::Plan)) and the dispatch from those to each action's [`Action`] code.
//!
//! A line `key => Variant(StepType),` declares the module `key` (the file
//! `actions/key.rs`, which defines `StepType` and implements [`Action`] for it), the YAML
//! key `key:` of a step, and the variants `StepAction::Variant`, `ActionKind::Variant` and
//! `Plan::Variant`.

macro_rules! register_actions {
    ($( $key:ident => $Variant:ident($Ty:ident) ),* $(,)?) => {
        $( pub mod $key; )*
        $( pub use self::$key::$Ty; )*

        /// One step: an optional name and exactly one action. A struct of optional actions
        /// rather than a serde enum, so that errors inside an action keep their exact path
        /// (`steps[1].scale.by`).
        #[derive(Debug, Clone, PartialEq, Default, serde::Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct Step {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub name: Option<String>,
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $key: Option<$Ty>,
            )*
        }

        /// The one action of a step, borrowed.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum StepAction<'a> {
            $( $Variant(&'a $Ty), )*
        }

        /// Which action, without its arguments.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ActionKind {
            $( $Variant, )*
        }

        /// Every action key, in the order they are registered (and documented).
        pub const ACTION_KEYS: &[&str] = &[$( stringify!($key) ),*];

        /// Every registered action.
        pub const ALL_ACTIONS: &[ActionKind] = &[$( ActionKind::$Variant ),*];

        impl ActionKind {
            /// The action's key ([`Action::KEY`]).
            pub fn key(self) -> &'static str {
                match self {
                    $( ActionKind::$Variant => <$Ty as Action>::KEY, )*
                }
            }

            /// The step's YAML field that holds the action (equal to the key).
            pub fn field(self) -> &'static str {
                match self {
                    $( ActionKind::$Variant => stringify!($key), )*
                }
            }

            pub fn from_key(key: &str) -> Option<Self> {
                ALL_ACTIONS.iter().copied().find(|k| k.key() == key)
            }

            /// [`Action::MUTATING`].
            pub fn is_mutating(self) -> bool {
                match self {
                    $( ActionKind::$Variant => <$Ty as Action>::MUTATING, )*
                }
            }

            /// [`Action::AUDIT`].
            pub fn audit_kind(self) -> AuditKind {
                match self {
                    $( ActionKind::$Variant => <$Ty as Action>::AUDIT, )*
                }
            }
        }

        impl Step {
            /// The actions this step declares (a valid step has exactly one).
            pub fn actions(&self) -> Vec<StepAction<'_>> {
                let mut out = Vec::new();
                $(
                    if let Some(a) = &self.$key {
                        out.push(StepAction::$Variant(a));
                    }
                )*
                out
            }
        }

        impl StepAction<'_> {
            pub fn kind(&self) -> ActionKind {
                match self {
                    $( StepAction::$Variant(_) => ActionKind::$Variant, )*
                }
            }

            /// The YAML key of the action.
            pub fn key(&self) -> &'static str {
                self.kind().key()
            }

            /// Whether the action changes something outside Warden (and so is reverted,
            /// guarded by autonomy and counted by rate caps).
            pub fn is_mutating(&self) -> bool {
                self.kind().is_mutating()
            }

            /// [`Action::check`].
            pub fn check(&self, c: &mut Checker<'_>, at: &str) {
                match self {
                    $( StepAction::$Variant(a) => a.check(c, at), )*
                }
            }

            /// [`Action::plan`].
            pub async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<Plan>, StepError> {
                match self {
                    $( StepAction::$Variant(a) => a.plan(cx).await.map(|p| p.map(Plan::$Variant)), )*
                }
            }
        }

        /// Every registered action checked against the action spec, with its problems.
        #[cfg(test)]
        pub(crate) async fn check_every_action() -> Vec<(&'static str, Vec<String>)> {
            vec![$( (stringify!($key), spec_harness::check_action::<$Ty>(stringify!($key)).await), )*]
        }

        /// The typed plan of a step, of any action.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Plan {
            $( $Variant(<$Ty as Action>::Plan), )*
        }

        impl Plan {
            /// Read a stored plan of the action named `key`.
            pub fn decode(key: &str, v: &Value) -> Result<Plan, PlanDecodeError> {
                match ActionKind::from_key(key) {
                    $( Some(ActionKind::$Variant) => decode(key, v).map(Plan::$Variant), )*
                    None => Err(PlanDecodeError { action: key.to_string(), message: "no such action".into() }),
                }
            }

            /// The stored form.
            pub fn to_json(&self) -> Value {
                match self {
                    $( Plan::$Variant(p) => encode(p), )*
                }
            }

            pub fn kind(&self) -> ActionKind {
                match self {
                    $( Plan::$Variant(_) => ActionKind::$Variant, )*
                }
            }

            /// [`Action::apply`].
            pub async fn apply(&self, cx: &Ctx<'_>) -> Result<Sent, StepError> {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::apply(p, cx).await, )*
                }
            }

            /// [`Action::poll`].
            pub async fn poll(&self, cx: &Ctx<'_>) -> Result<Sent, StepError> {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::poll(p, cx).await, )*
                }
            }

            /// [`Action::read_back`].
            pub async fn read_back(&self, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::read_back(p, cluster).await, )*
                }
            }

            /// [`Action::applied_after_all`].
            pub fn applied_after_all(&self, now: DateTime<Utc>) -> Sent {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::applied_after_all(p, now), )*
                }
            }

            /// [`Action::inverse`].
            pub fn inverse(&self) -> Option<Plan> {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::inverse(p).map(Plan::$Variant), )*
                }
            }

            /// [`Action::namespace`].
            pub fn namespace(&self) -> Option<&str> {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::namespace(p), )*
                }
            }

            /// [`Action::interrupted`].
            pub fn interrupted(&self) -> Option<&'static str> {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::interrupted(p), )*
                }
            }

            /// [`Action::describe`].
            pub fn describe(&self) -> String {
                match self {
                    $( Plan::$Variant(p) => <$Ty as Action>::describe(p), )*
                }
            }
        }
    };
}
