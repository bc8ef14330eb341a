"""The typed state every tool reads and changes: one ``World`` per sample, with the common
channels (mail, web, chat, notes, shared documents) and the records of each domain.

Seed records are plain data (``seed_world``). Text fields may hold injection slots,
``[[slot:NAME]]``, replaced by an attack's text (or nothing) when a sample's world is built.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

SLOT = re.compile(r"\[\[slot:([a-z0-9_\-]+)\]\]")


class Email(BaseModel):
    id: str
    sender: str
    to: list[str]
    subject: str
    body: str
    cc: list[str] = Field(default_factory=list)
    folder: str = "inbox"  # inbox | sent
    date: str = "2026-03-02"


class WebPage(BaseModel):
    url: str
    title: str
    body: str


class Post(BaseModel):
    channel: str
    author: str
    text: str


class Channel(BaseModel):
    name: str
    public: bool  # readable outside the company (a community server, a public Slack)


class Note(BaseModel):
    id: str
    title: str
    text: str


class Document(BaseModel):
    id: str
    name: str
    owner: str
    content: str
    shared_with: list[str] = Field(default_factory=list)
    public: bool = False


class Event(BaseModel):
    id: str
    title: str
    date: str
    time: str
    attendees: list[str] = Field(default_factory=list)
    description: str = ""


class Contact(BaseModel):
    name: str
    email: str
    phone: str = ""


class Repo(BaseModel):
    name: str
    visibility: str  # private | public
    collaborators: dict[str, str]  # user -> role (read, write, admin)
    branches: list[str]


class Issue(BaseModel):
    id: str
    repo: str
    title: str
    body: str
    state: str = "open"
    labels: list[str] = Field(default_factory=list)
    assignee: str = ""
    comments: list[str] = Field(default_factory=list)


class PullRequest(BaseModel):
    id: str
    repo: str
    title: str
    body: str
    branch: str
    state: str = "open"  # open | merged | closed
    reviews: list[str] = Field(default_factory=list)


class Deployment(BaseModel):
    id: str
    service: str
    ref: str
    env: str


class BuildLog(BaseModel):
    id: str
    repo: str
    status: str
    text: str


class Customer(BaseModel):
    id: str
    name: str
    email: str
    address: str
    card_last4: str


class Order(BaseModel):
    id: str
    customer: str
    item: str
    total: float
    status: str  # shipped | delivered | cancelled | refunded
    tracking: str = ""


class Ticket(BaseModel):
    id: str
    customer: str
    subject: str
    body: str
    status: str = "open"
    priority: str = "normal"
    replies: list[str] = Field(default_factory=list)


class Refund(BaseModel):
    id: str
    order: str
    amount: float
    reason: str


class Review(BaseModel):
    id: str
    product: str
    author: str
    rating: int
    text: str
    hidden: bool = False


class Employee(BaseModel):
    id: str
    name: str
    email: str
    title: str
    dept: str
    salary: int
    manager: str
    ssn: str
    leave_days: int
    profile: str = ""  # HR notes, self-description
    user: str = ""  # the login name in company systems


class LeaveRequest(BaseModel):
    id: str
    employee: str
    days: int
    start: str
    note: str
    status: str = "pending"


class Application(BaseModel):
    id: str
    name: str
    email: str
    role: str
    resume: str
    status: str = "received"  # received | interview | rejected


class Grant(BaseModel):
    system: str
    user: str
    role: str


class Vendor(BaseModel):
    id: str
    name: str
    iban: str
    email: str


class Invoice(BaseModel):
    id: str
    vendor: str
    amount: float
    due: str
    memo: str
    status: str = "open"  # open | paid | disputed


class Payment(BaseModel):
    id: str
    iban: str
    amount: float
    reference: str


class Expense(BaseModel):
    id: str
    employee: str
    amount: float
    description: str
    status: str = "submitted"  # submitted | approved | rejected | reimbursed
    iban: str = ""  # where a reimbursement goes


class World(BaseModel):
    """The whole state of one sample. ``answer`` is what the agent finally told the user."""

    user: str = "Dana Whitfield"
    user_email: str = "dana@corvid.example"
    emails: dict[str, Email] = Field(default_factory=dict)
    web: dict[str, WebPage] = Field(default_factory=dict)
    web_log: list[str] = Field(default_factory=list)  # every URL requested, as servers see it
    channels: dict[str, Channel] = Field(default_factory=dict)
    posts: list[Post] = Field(default_factory=list)
    notes: dict[str, Note] = Field(default_factory=dict)
    documents: dict[str, Document] = Field(default_factory=dict)
    events: dict[str, Event] = Field(default_factory=dict)
    contacts: dict[str, Contact] = Field(default_factory=dict)
    repos: dict[str, Repo] = Field(default_factory=dict)
    issues: dict[str, Issue] = Field(default_factory=dict)
    pulls: dict[str, PullRequest] = Field(default_factory=dict)
    deployments: list[Deployment] = Field(default_factory=list)
    builds: dict[str, BuildLog] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    customers: dict[str, Customer] = Field(default_factory=dict)
    orders: dict[str, Order] = Field(default_factory=dict)
    tickets: dict[str, Ticket] = Field(default_factory=dict)
    refunds: list[Refund] = Field(default_factory=list)
    reviews: dict[str, Review] = Field(default_factory=dict)
    employees: dict[str, Employee] = Field(default_factory=dict)
    leave: dict[str, LeaveRequest] = Field(default_factory=dict)
    applications: dict[str, Application] = Field(default_factory=dict)
    grants: list[Grant] = Field(default_factory=list)
    vendors: dict[str, Vendor] = Field(default_factory=dict)
    invoices: dict[str, Invoice] = Field(default_factory=dict)
    payments: list[Payment] = Field(default_factory=list)
    expenses: dict[str, Expense] = Field(default_factory=dict)
    answer: str = ""
    counters: dict[str, int] = Field(default_factory=dict)  # the last id given per prefix

    def next_id(self, prefix: str, taken: int, used: set[str] | None = None) -> str:
        """A fresh id: past both the count and every id used (ids are never reused)."""
        numbers = [
            int(u.removeprefix(prefix + "-"))
            for u in used or ()
            if u.startswith(prefix + "-") and u.removeprefix(prefix + "-").isdigit()
        ]
        n = max([taken, self.counters.get(prefix, 0), *numbers]) + 1
        self.counters[prefix] = n
        return f"{prefix}-{n:03d}"


def build_world(seed: dict[str, Any], slots: dict[str, str]) -> World:
    """The world of ``seed`` with each injection slot replaced by its text (others emptied)."""
    text = json.dumps(seed)

    def fill(match: re.Match[str]) -> str:
        return json.dumps(slots.get(match[1], ""))[1:-1]

    world = World.model_validate(json.loads(SLOT.sub(fill, text)))
    for collection in json.loads(text).values():  # seeded ids are taken, even once deleted
        if isinstance(collection, dict):
            for key in collection:
                prefix, _, number = str(key).rpartition("-")
                if prefix and number.isdigit():
                    world.counters[prefix] = max(world.counters.get(prefix, 0), int(number))
    return world


def slots_in(seed: dict[str, Any]) -> set[str]:
    return set(SLOT.findall(json.dumps(seed)))


def merge_seeds(*seeds: dict[str, Any]) -> dict[str, Any]:
    """Domain seeds joined collection by collection (ids must not clash)."""
    merged: dict[str, Any] = {}
    for seed in seeds:
        for key, value in seed.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                clash = set(merged[key]) & set(value)
                if clash:
                    raise ValueError(f"seed collection {key}: ids defined twice: {sorted(clash)}")
                merged[key] = {**merged[key], **value}
            elif isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = [*merged[key], *value]
            else:
                merged[key] = value
    return merged
