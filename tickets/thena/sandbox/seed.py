"""Deterministic seed data: the same seed and anchor time always give the same world.

Shapes follow thena-api.md §3-§4. Where the docs are silent (option items of custom
fields, the tail of the ticket object, sentiments) the shape here is our guess [?].
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

TICKET_COUNT = 240  # the default world; tests rely on its exact data

_ALNUM = string.ascii_uppercase + string.digits

# (name, identifier, colour, icon, description, sub-teams as (name, identifier))
_TEAMS = [
    (
        "Support",
        "SUP",
        "#2563eb",
        "headset",
        "Front-line customer support",
        [("Tier 1", "SUPT1"), ("Tier 2", "SUPT2")],
    ),
    (
        "Billing",
        "BIL",
        "#16a34a",
        "credit-card",
        "Invoices, plans and refunds",
        [("Refunds", "BILRF")],
    ),
    (
        "Engineering",
        "ENG",
        "#9333ea",
        "code",
        "Bugs and escalations from support",
        [("Platform", "ENGPL"), ("Mobile", "ENGMB")],
    ),
]

# Parent statuses with their sub-statuses (thena-api.md §4.4 defaults).
_STATUSES = [
    ("Open", []),
    ("In progress", ["Investigating", "Waiting on engineering"]),
    ("On hold", ["Waiting on customer"]),
    ("Closed", ["Resolved", "Won't fix"]),
]
_PRIORITIES = ["Low", "Medium", "High", "Urgent"]
_TYPES = [
    ("Bug", "#db1f61"),
    ("Feature Request", "#1f74db"),
    ("Question", "#1fdb8a"),
    ("Task", "#db7a1f"),
]
_SENTIMENTS = [("Positive", False), ("Neutral", True), ("Negative", False)]

_PEOPLE = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Linus Torvalds",
    "Margaret Hamilton",
    "Dennis Ritchie",
    "Barbara Liskov",
    "Ken Thompson",
    "Frances Allen",
    "Edsger Dijkstra",
    "Radia Perlman",
    "Donald Knuth",
    "Hedy Lamarr",
    "John Backus",
    "Karen Sparck Jones",
]
_FIRST_NAMES = [
    "Maya",
    "Liam",
    "Noor",
    "Ivan",
    "Sofia",
    "Tariq",
    "Elena",
    "Kenji",
    "Amara",
    "Oscar",
]
_LAST_NAMES = [
    "Okafor",
    "Novak",
    "Silva",
    "Haddad",
    "Berg",
    "Tanaka",
    "Moreau",
    "Kowalski",
    "Reyes",
]
_COMPANIES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Aperture",
    "Massive Dynamic",
    "Pied Piper",
    "Prestige",
    "Oceanic",
    "Nakatomi",
    "Monarch",
    "Dunder Mifflin",
    "Sterling Cooper",
    "Blue Sun",
    "Virtucon",
    "Bluth",
    "Krusty",
    "Planet Express",
    "Duff",
    "Gringotts",
    "Ollivander",
    "Weyland",
]
_COMPANY_SUFFIXES = ["Inc", "Labs", "Ltd", "GmbH", "Corp", "Systems"]
_INDUSTRIES = ["Software", "Retail", "Finance", "Healthcare", "Logistics"]
_HEALTH = ["Healthy", "At risk", "Churning"]
_CLASSIFICATIONS = ["Enterprise", "Mid-market", "SMB"]
_ACCOUNT_STATUSES = ["Active", "Trial", "Churned"]
_SOURCES = ["slack", "email", "web", "manual", "api"]

_TITLES = {
    "SUP": [
        (
            "Cannot log in after password reset",
            "The reset link works but the new password is refused.",
        ),
        (
            "Export to CSV times out",
            "Exporting the monthly report spins for minutes and then fails.",
        ),
        (
            "How do I add a teammate?",
            "We bought two more seats and cannot find where to invite people.",
        ),
        ("Notifications arrive twice", "Every Slack notification shows up twice in our channel."),
        (
            "SSO login loops back to the start page",
            "After Okta sign-in we land on the login page again.",
        ),
        ("Dashboard shows yesterday's numbers", "The overview widgets lag a full day behind."),
        ("Cannot upload attachments over 10 MB", "Uploads stop at 99% for larger PDFs."),
        (
            "Request to change account owner",
            "Our admin left; please move ownership to the new lead.",
        ),
        ("Search misses recent tickets", "Tickets created in the last hour do not show in search."),
        (
            "Dark mode makes tables unreadable",
            "Grey text on a dark grey background in the reports view.",
        ),
    ],
    "BIL": [
        ("Invoice shows the wrong VAT number", "The March invoice carries our old VAT id."),
        ("Refund for a duplicate charge", "The card was charged twice for the annual plan."),
        ("Upgrade to the Business plan", "We want to move from Team to Business mid-cycle."),
        ("Card declined on renewal", "Renewal failed although the card is valid."),
        ("Need invoices sent to accounts payable", "Please add ap@ as a billing contact."),
        ("Pro-rated credit not applied", "Seats removed last month still appear on the bill."),
        ("Switch from monthly to annual billing", "Is there a discount when we switch now?"),
        ("Purchase order number missing on invoice", "Our PO must appear on every invoice."),
        ("Currency changed to USD unexpectedly", "We were billed in EUR until this month."),
    ],
    "ENG": [
        ("API returns 502 on bulk update", "PATCH /v1/tickets/bulk fails for more than 50 ids."),
        (
            "Webhook retries never fire",
            "Failed deliveries are not retried after the first attempt.",
        ),
        ("Mobile app crashes on launch (Android 14)", "Crash right after the splash screen."),
        (
            "Memory leak in the sync worker",
            "Worker RSS grows until it is OOM-killed every few hours.",
        ),
        ("Rate limit headers missing on 429", "The 429 answer carries no X-RateLimit-Reset."),
        (
            "Timezone off by one hour after DST",
            "Due dates shift by an hour since the clock change.",
        ),
        ("Add SCIM provisioning", "We want users provisioned from Azure AD."),
        ("Slow ticket list for large teams", "The list takes 8 seconds with 50k tickets."),
        (
            "Custom field values lost on merge",
            "Merging two tickets drops the custom fields of the second.",
        ),
        ("iOS push notifications not delivered", "No pushes since the last release."),
    ],
}

# Custom fields: (name, fieldType, team identifier or None for global, options)
_CUSTOM_FIELDS = [
    ("Order number", "single_line", None, []),
    ("Steps to reproduce", "multi_line", "ENG", []),
    ("Affected users", "integer", None, []),
    ("Refund amount", "decimal", "BIL", []),
    ("Renewal date", "date", "BIL", []),
    ("Incident start", "date_time", "ENG", []),
    ("Product area", "single_choice", None, ["Web app", "Mobile app", "API", "Integrations"]),
    ("Platforms", "multi_choice", "ENG", ["iOS", "Android", "Web", "Desktop"]),
    ("Customer impacting", "checkbox", None, []),
    ("VIP customer", "boolean", "SUP", []),
    ("Contact email", "email", "SUP", []),
    ("Reference URL", "url", None, []),
]

# Ticket object keys copied from a team, as `team<Suffix>` / `subTeam<Suffix>`.
TEAM_COPY = [
    ("Name", "name"),
    ("Identifier", "identifier"),
    ("Icon", "icon"),
    ("Color", "color"),
    ("OrganizationId", "organizationId"),
    ("ParentTeamId", "parentTeamId"),
    ("Description", "description"),
    ("ConfigurationId", "configurationId"),
    ("TeamOwnerId", "teamOwnerId"),
    ("IsActive", "isActive"),
    ("IsPrivate", "isPrivate"),
    ("CreatedAt", "createdAt"),
    ("UpdatedAt", "updatedAt"),
    ("DeletedAt", "deletedAt"),
    ("ArchivedAt", "archivedAt"),
]


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and `Z`, as JavaScript's toISOString()."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


@dataclass
class World:
    organization_id: str
    api_user_id: str
    users: dict[str, dict]
    teams: dict[str, dict]  # parent teams first, then sub-teams
    members: dict[str, list[str]]  # team id -> user ids
    statuses: dict[str, list[dict]]  # parent team id -> items (sub-teams share them)
    priorities: dict[str, list[dict]]
    types: dict[str, list[dict]]
    sentiments: dict[str, list[dict]]
    accounts: dict[str, dict]
    forms: list[dict]
    custom_fields: list[dict]
    tickets: dict[str, dict]

    def root_team_id(self, team_id: str) -> str:
        return self.teams[team_id]["parentTeamId"] or team_id

    def sub_teams(self, team_id: str) -> list[dict]:
        return [t for t in self.teams.values() if t["parentTeamId"] == team_id]

    def team_forms(self, team_id: str) -> list[dict]:
        root = self.root_team_id(team_id)
        return [f for f in self.forms if f["teamId"] in (None, root)]

    def member(self, team_id: str, user_id: str) -> dict:
        team = self.teams[team_id]
        user = self.users[user_id]
        return {
            "id": user["id"],
            "name": user["name"],
            "email": user["email"],
            "invitedBy": team["teamOwnerId"],
            "teamId": team["id"],
            "teamName": team["name"],
            "isActive": True,
            "role": "owner" if user["id"] == team["teamOwnerId"] else "member",
            "userType": "ORG_MEMBER",
            "isOwner": user["id"] == team["teamOwnerId"],
            "avatarUrl": user["avatarUrl"],
            "joinedAt": team["createdAt"],
            "createdAt": user["createdAt"],
            "metadata": {},
        }

    def refresh(self, ticket: dict) -> None:
        """Recompute the display names and team copies from the ids."""
        team = self.teams[ticket["teamId"]]
        sub = self.teams.get(ticket["subTeamId"]) if ticket["subTeamId"] else None
        for suffix, key in TEAM_COPY:
            ticket["team" + suffix] = team[key]
        for suffix, key in TEAM_COPY:
            ticket["subTeam" + suffix] = sub[key] if sub else None
        root = self.root_team_id(team["id"])
        ticket["status"] = _name(self.statuses[root], ticket["statusId"])
        ticket["priority"] = _name(self.priorities[root], ticket["priorityId"])
        ticket["type"] = _name(self.types[root], ticket["typeId"])
        ticket["sentiment"] = _name(self.sentiments[root], ticket["sentimentId"])
        account = self.accounts.get(ticket["accountId"] or "")
        ticket["account"] = account["name"] if account else None
        closer = self.users.get(ticket["closedById"] or "")
        ticket["closedBy"] = closer["name"] if closer else None
        ticket["closedByEmail"] = closer["email"] if closer else None
        agent = self.users.get(ticket["assignedAgentId"] or "")
        ticket["assignedAgent"] = agent["name"] if agent else None
        ticket["assignedAgentEmail"] = agent["email"] if agent else None
        ticket["assignedAgentAvatar"] = agent["avatarUrl"] if agent else None


def _name(items: list[dict], item_id: str | None) -> str | None:
    return next((i["name"] for i in items if i["id"] == item_id), None)


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def __call__(self, prefix: str = "", length: int = 29) -> str:
        while True:
            value = prefix + "".join(self.rng.choices(_ALNUM, k=length - len(prefix)))
            if value not in self.seen:
                self.seen.add(value)
                return value


def build(seed: int, now: datetime, ticket_count: int = TICKET_COUNT) -> World:
    """The world of `seed` at `now` with `ticket_count` tickets. The first TICKET_COUNT
    tickets do not depend on `ticket_count`: a bigger world is the default one plus more."""
    if ticket_count < 0:
        raise ValueError("ticket_count must not be negative")
    rng = random.Random(seed)
    new_id = _Ids(rng)
    org = new_id("E", 10)
    long_ago = iso(now - timedelta(days=400))

    users: dict[str, dict] = {}
    for name in _PEOPLE:
        uid = new_id("U", 10)
        email = name.lower().replace(" ", ".") + "@helpdesk.example"
        users[uid] = {
            "id": uid,
            "name": name,
            "email": email,
            "avatarUrl": f"https://avatars.example/{slug(name)}.png",
            "createdAt": long_ago,
        }
    user_ids = list(users)

    teams: dict[str, dict] = {}
    subs: list[dict] = []
    members: dict[str, list[str]] = {}
    statuses: dict[str, list[dict]] = {}
    priorities: dict[str, list[dict]] = {}
    types: dict[str, list[dict]] = {}
    sentiments: dict[str, list[dict]] = {}

    def team(name, identifier, color, icon, description, parent, owner_id) -> dict:
        tid = new_id("T", 10)
        return {
            "id": tid,
            "teamId": tid,
            "name": name,
            "identifier": identifier,
            "icon": icon,
            "color": color,
            "description": description,
            "parentTeamId": parent["id"] if parent else None,
            "parentTeamName": parent["name"] if parent else None,
            "organizationId": org,
            "configurationId": new_id("C", 10),
            "teamOwner": users[owner_id]["name"],
            "teamOwnerId": owner_id,
            "fallbackSubTeam": None,
            "isActive": True,
            "isPrivate": False,
            "createdAt": long_ago,
            "updatedAt": long_ago,
            "deletedAt": None,
            "archivedAt": None,
        }

    def config_item(team_id: str, name: str, **extra) -> dict:
        return {
            "id": new_id(),
            "name": name,
            "teamId": team_id,
            "organizationId": org,
            "createdAt": long_ago,
            "updatedAt": long_ago,
            **extra,
        }

    for name, identifier, color, icon, description, sub_defs in _TEAMS:
        team_members = rng.sample(user_ids, rng.randint(4, 6))
        parent = team(name, identifier, color, icon, description, None, team_members[0])
        tid = parent["id"]
        teams[tid] = parent
        members[tid] = team_members
        for sub_name, sub_identifier in sub_defs:
            sub_members = rng.sample(team_members, rng.randint(2, 3))
            sub = team(
                sub_name, sub_identifier, color, icon, f"{name}: {sub_name}", parent, sub_members[0]
            )
            subs.append(sub)
            members[sub["id"]] = sub_members
        parent["fallbackSubTeam"] = subs[-1]["id"]

        statuses[tid] = []
        for status_name, children in _STATUSES:
            item = config_item(
                tid,
                status_name,
                displayName=status_name,
                description=f"{status_name} tickets",
                isDefault=status_name == "Open",
                parentStatusId=None,
            )
            statuses[tid].append(item)
            for child in children:
                statuses[tid].append(
                    config_item(
                        tid,
                        child,
                        displayName=child,
                        description=f"{status_name}: {child}",
                        isDefault=False,
                        parentStatusId=item["id"],
                    )
                )
        priorities[tid] = [
            config_item(tid, p, displayName=p, description=f"{p} priority", isDefault=p == "Medium")
            for p in _PRIORITIES
        ]
        types[tid] = [
            config_item(tid, t, color=c, icon=slug(t), isActive=True, autoAssign=False)
            for t, c in _TYPES
        ]
        sentiments[tid] = [
            config_item(tid, s, description=f"{s} customer mood", isDefault=d)
            for s, d in _SENTIMENTS
        ]
    for sub in subs:
        teams[sub["id"]] = sub
    by_identifier = {t["identifier"]: t for t in teams.values()}

    accounts: dict[str, dict] = {}
    contacts: dict[str, list[dict]] = {}
    lookups = {
        kind: [(new_id(), value) for value in values]
        for kind, values in [
            ("status", _ACCOUNT_STATUSES),
            ("classification", _CLASSIFICATIONS),
            ("health", _HEALTH),
            ("industry", _INDUSTRIES),
        ]
    }
    for company in _COMPANIES:
        aid = new_id("A", 10)
        name = f"{company} {rng.choice(_COMPANY_SUFFIXES)}"
        domain = slug(company) + ".example"
        owner = users[rng.choice(user_ids)]
        created = now - timedelta(days=rng.randint(100, 700))
        address = f"{rng.randint(1, 250)} Market Street, Springfield"
        account = {
            "id": aid,
            "name": name,
            "description": f"{name}, customer since {created.year}",
            "source": rng.choice(["hubspot", "salesforce", "manual"]),
            "logo": f"https://logos.example/{slug(company)}.png",
        }
        for kind, options in lookups.items():
            option_id, value = rng.choice(options)
            account[f"{kind}Id"] = option_id
            account[kind] = value
        account |= {
            "primaryDomain": domain,
            "secondaryDomain": None,
            "accountOwner": owner["name"],
            "accountOwnerId": owner["id"],
            "accountOwnerEmail": owner["email"],
            "accountOwnerAvatarUrl": owner["avatarUrl"],
            "annualRevenue": rng.randint(1, 500) * 100_000,
            "employees": rng.randint(5, 5000),
            "website": f"https://{domain}",
            "billingAddress": address,
            "shippingAddress": address,
            "customFieldValues": [],
            "metadata": {},
            "createdAt": iso(created),
            "updatedAt": iso(created + timedelta(days=rng.randint(0, 90))),
        }
        accounts[aid] = account
        contacts[aid] = []
        for _ in range(2):
            first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
            contacts[aid].append(
                {
                    "id": new_id(),
                    "firstName": first,
                    "lastName": last,
                    "email": f"{first}.{last}@{domain}".lower(),
                }
            )

    custom_fields = []
    for name, field_type, identifier, options in _CUSTOM_FIELDS:
        custom_fields.append(
            {
                "name": name,
                "uid": new_id(),
                "slug": slug(name),
                "organizationId": org,
                "source": "ticket",
                "fieldType": field_type,
                # Option item shape is undocumented [?].
                "options": [
                    {"id": new_id(), "value": o, "order": i} for i, o in enumerate(options)
                ],
                "metadata": {},
                "createdAt": long_ago,
                "updatedAt": long_ago,
                "isActive": True,
                "teamId": by_identifier[identifier]["id"] if identifier else None,
                "autoAddToAllForms": identifier is None,
                "hintText": None,
                "placeholderText": None,
                "mandatoryOnCreation": False,
                "mandatoryOnClose": name == "Product area",
                "visibleToCustomer": True,
                "editableByCustomer": False,
                "defaultValue": None,
            }
        )
    custom_fields.append(
        {
            **custom_fields[6],
            "name": "Contract tier",
            "uid": new_id(),
            "slug": "contract-tier",
            "source": "account",
            "options": [
                {"id": new_id(), "value": o, "order": i} for i, o in enumerate(["Gold", "Silver"])
            ],
        }
    )

    def form(name: str, team_id: str | None, fields: list[dict], default: bool, order: int) -> dict:
        return {
            "id": new_id(),
            "name": name,
            "description": f"{name} form",
            "teamId": team_id,
            "fields": [
                {
                    "field": f["uid"],
                    "defaultValue": None,
                    "mandatoryOnCreation": False,
                    "mandatoryOnClose": f["mandatoryOnClose"],
                    "visibleToCustomer": True,
                    "editableByCustomer": False,
                }
                for f in fields
            ],
            "conditions": [],
            "version": 1,
            "isActive": True,
            "default": default,
            "channels": ["web", "email"],
            "order": order,
        }

    ticket_fields = [f for f in custom_fields if f["source"] == "ticket"]
    global_fields = [f for f in ticket_fields if f["teamId"] is None]
    forms = [form("Default", None, global_fields, True, 0), form("Quick note", None, [], False, 1)]
    for i, parent in enumerate(t for t in teams.values() if not t["parentTeamId"]):
        own = [f for f in ticket_fields if f["teamId"] == parent["id"]]
        forms.append(
            form(f"{parent['name']} request", parent["id"], global_fields + own, False, i + 2)
        )

    world = World(
        organization_id=org,
        api_user_id=user_ids[0],
        users=users,
        teams=teams,
        members=members,
        statuses=statuses,
        priorities=priorities,
        types=types,
        sentiments=sentiments,
        accounts=accounts,
        forms=forms,
        custom_fields=custom_fields,
        tickets={},
    )
    batches = [(rng, new_id, min(ticket_count, TICKET_COUNT))]
    if ticket_count > TICKET_COUNT:
        # The rest from a generator of their own, so the first TICKET_COUNT stay as the
        # default world has them (a str seed is hashed the same way in every process).
        more_rng = random.Random(f"{seed}:more tickets")
        more_ids = _Ids(more_rng)
        more_ids.seen = new_id.seen  # ids stay unique across both
        batches.append((more_rng, more_ids, ticket_count - TICKET_COUNT))
    for batch_rng, batch_ids, count in batches:
        for ticket in _tickets(batch_rng, batch_ids, now, world, contacts, count):
            world.refresh(ticket)
            world.tickets[ticket["id"]] = ticket
    return world


def _tickets(rng, new_id, now: datetime, world: World, contacts: dict[str, list[dict]], count: int):
    """`count` tickets, numbered on from the tickets `world` already has."""
    parents = [t for t in world.teams.values() if not t["parentTeamId"]]
    account_ids = list(world.accounts)
    ticket_fields = [f for f in world.custom_fields if f["source"] == "ticket"]
    # Skewed towards the recent past so that short date ranges are not empty.
    ages = sorted((timedelta(days=90 * rng.random() ** 2) for _ in range(count)), reverse=True)
    numbers = {t["id"]: 0 for t in parents}
    for existing in world.tickets.values():
        numbers[existing["teamId"]] = max(numbers[existing["teamId"]], existing["ticketId"])
    for age in ages:
        team = rng.choice(parents)
        tid = team["id"]
        numbers[tid] += 1
        created = now - age
        updated = created + (now - created) * rng.random()
        title, description = rng.choice(_TITLES[team["identifier"]])
        status = rng.choices(world.statuses[tid], weights=[5, 4, 2, 2, 2, 2, 4, 2, 1])[0]
        closed = status["name"] in ("Closed", "Resolved", "Won't fix")
        agent = rng.choice(world.members[tid]) if rng.random() < 0.8 else None
        account_id = rng.choice(account_ids) if rng.random() < 0.9 else None
        contact = rng.choice(contacts[account_id]) if account_id else None
        contact_email = contact["email"] if contact else None
        who = (
            f"{contact['firstName']} from {world.accounts[account_id]['name']}"
            if contact
            else "A customer"
        )
        fields = [f for f in ticket_fields if f["teamId"] in (None, tid)]
        values = [_field_value(rng, f, now) for f in rng.sample(fields, rng.randint(1, 3))]
        ticket_id = new_id()
        yield {
            "id": ticket_id,
            "ticketIdentifier": f"{team['identifier']}-{numbers[tid]}",
            "ticketId": numbers[tid],
            "title": title,
            "description": f"{who} writes: {description}",
            "source": rng.choice(_SOURCES),
            "accountId": account_id,
            "statusId": status["id"],
            "priorityId": rng.choices(world.priorities[tid], weights=[3, 5, 3, 1])[0]["id"],
            "storyPoints": rng.choice([1, 2, 3, 5, 8]) if team["identifier"] == "ENG" else None,
            "teamId": tid,
            "subTeamId": rng.choice(world.sub_teams(tid))["id"] if rng.random() < 0.5 else None,
            "isPrivate": rng.random() < 0.1,
            "typeId": rng.choice(world.types[tid])["id"],
            "assignedAgentId": agent,
            "requestorEmail": contact_email,
            "customerContactId": contact["id"] if contact else None,
            "customerContactFirstName": contact["firstName"] if contact else None,
            "customerContactLastName": contact["lastName"] if contact else None,
            "customerContactEmail": contact_email,
            "submitterEmail": contact_email,
            "customFieldValues": values if rng.random() < 0.4 else [],
            "deletedAt": None,
            "archivedAt": None,
            "createdAt": iso(created),
            "updatedAt": iso(updated),
            "formId": rng.choice(world.team_forms(tid))["id"] if rng.random() < 0.7 else None,
            "aiGeneratedTitle": None,
            "aiGeneratedSummary": f"Customer reports: {title.lower()}."
            if rng.random() < 0.3
            else None,
            "sentimentId": rng.choice(world.sentiments[tid])["id"] if rng.random() < 0.6 else None,
            # Write-only (thena-api.md §3): stored, returned only by an echoing sandbox.
            "dueDate": iso(created + timedelta(days=rng.randint(2, 30)))
            if rng.random() < 0.3
            else None,
            "metadata": {"channel": rng.choice(["#support", "#billing"])}
            if rng.random() < 0.3
            else {},
            "attachmentUrls": (
                [f"https://files.example/{ticket_id.lower()}/screenshot.png"]
                if rng.random() < 0.15
                else []
            ),
            "isProactive": False,
            "proactiveChannels": [],
            "closedAt": iso(updated) if closed else None,
            "closedById": agent if closed else None,
            "lastCustomerComment": "Any update on this?" if rng.random() < 0.5 else None,
            "lastVendorComment": "We are looking into it." if rng.random() < 0.5 else None,
            "lastComment": "Thanks, that fixed it." if closed else "Any update on this?",
        }


def _field_value(rng: random.Random, field: dict, now: datetime) -> dict:
    kind = field["fieldType"]
    options = [o["value"] for o in field["options"]]
    if kind == "multi_choice":
        values = rng.sample(options, rng.randint(1, 2))
    elif kind == "single_choice":
        values = [rng.choice(options)]
    else:
        values = [
            {
                "single_line": f"ORD-{rng.randint(10000, 99999)}",
                "multi_line": "1. Open the app\n2. Tap sync\n3. Watch it fail",
                "integer": str(rng.randint(1, 500)),
                "decimal": f"{rng.uniform(5, 500):.2f}",
                "date": (now + timedelta(days=rng.randint(1, 200))).date().isoformat(),
                "date_time": iso(now - timedelta(hours=rng.randint(1, 500))),
                "checkbox": rng.choice(["true", "false"]),
                "boolean": rng.choice(["true", "false"]),
                "email": f"owner{rng.randint(1, 99)}@customer.example",
                "url": f"https://status.example/incidents/{rng.randint(100, 999)}",
            }[kind]
        ]
    # The wire shape of a value is undocumented (thena-api.md §2.3) [?].
    return {"customFieldId": field["uid"], "data": [{"value": v} for v in values]}
