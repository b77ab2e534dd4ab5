"""Writes for customers, memberships and API keys; customers' stream notices."""
import secrets
from collections import Counter
from datetime import date, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from autogen_platform import realtime
from autogen_platform.errors import Conflict, NotFound, ValidationFailed
from core.services import audit_record
from runtime import httptools

from . import signals, tokens
from .authentication import hash_api_key
from .models import ApiKey, Customer, CustomerNotice, CustomerStream, CustomerUsage, Membership


@transaction.atomic
def customer_create(*, actor, name: str, quotas: dict | None = None, request=None) -> Customer:
    existing = Customer.objects.filter(name=name).first()
    if existing is not None and existing.deleted_at is not None:
        raise Conflict(f"The name {name!r} belongs to a deleted customer until it is purged "
                       f"(CUSTOMER_RETENTION_DAYS after its deletion)")
    if existing is not None:
        raise Conflict(f"A customer named {name!r} exists already")
    customer = Customer.objects.create(name=name, **(quotas or {}))
    audit_record(actor=actor, action="customer.create", target=f"customer:{customer.pk}", customer=customer,
                 request=request, details={"name": name, "quotas": quotas or {}})
    return customer


@transaction.atomic
def member_add(*, actor, customer: Customer, username: str, password: str, role: str = "member", request=None):
    """Create a user in a customer, or move an existing non-staff user's membership and reset the password."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    Membership.objects.update_or_create(user=user, defaults={"customer": customer, "role": role})
    audit_record(actor=actor, action="member.add", target=f"user:{user.username}", customer=customer,
                 request=request, details={"role": role, "created": created})
    return user


@transaction.atomic
def api_key_create(*, actor, name: str, request=None) -> tuple[ApiKey, str]:
    """Returns the stored key and the raw key, which is never stored and shown only now."""
    membership = actor.membership
    prefix = secrets.token_hex(4)
    raw = f"agp_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        customer=membership.customer, user=actor, name=name, prefix=prefix, key_hash=hash_api_key(raw)
    )
    audit_record(actor=actor, action="api_key.create", target=f"api_key:{key.pk}", request=request,
                 details={"name": name, "prefix": prefix})
    return key, raw


@transaction.atomic
def api_key_revoke(*, actor, key: ApiKey, request=None) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="api_key.revoke", target=f"api_key:{key.pk}", request=request)
    return key


def customer_usage_add(changes: dict[tuple[int, date], tuple[int, ...]]) -> None:
    """Add to the customers' usage counters: {(customer id, day the task was created): deltas}, the deltas in
    the order of CustomerUsage.COUNTERS (tasks, tokens, then the tasks ended in each final status).

    Every write of a task's existence, tokens_used or end calls this in its own transaction, so the counters
    stay the sums over the tasks. One INSERT ... ON CONFLICT per row (SQLite and PostgreSQL alike), in key order."""
    rows = [(cid, day, deltas) for (cid, day), deltas in sorted(changes.items()) if any(deltas)]
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(CustomerUsage._meta.db_table)
    columns = [quote(name) for name in CustomerUsage.COUNTERS]
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (customer_id, day, {', '.join(columns)}) "
            f"VALUES (%s, %s, {', '.join(['%s'] * len(columns))}) ON CONFLICT (customer_id, day) DO UPDATE SET "
            + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in columns),
            [(cid, connection.ops.adapt_datefield_value(day), *deltas) for cid, day, deltas in rows],
        )


@transaction.atomic
def customer_update(*, actor, customer: Customer, name: str | None = None, quotas: dict | None = None,
                    http_tool_hosts: list | None = None, request=None) -> Customer:
    """Rename and/or change some quotas and/or the hosts its HTTP tools may call; what is not named keeps its value.
    A host taken off the list is refused at the next call of a tool that names it (runtime.httptools)."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    changes = {}
    if http_tool_hosts is not None:
        hosts = http_tool_hosts_checked(http_tool_hosts)
        if hosts != list(customer.http_tool_hosts or []):
            changes["http_tool_hosts"] = [list(customer.http_tool_hosts or []), hosts]
            customer.http_tool_hosts = hosts
    if name is not None and name != customer.name:
        if Customer.objects.filter(name=name).exclude(pk=customer.pk).exists():
            raise Conflict(f"A customer named {name!r} exists already")
        changes["name"] = [customer.name, name]
        customer.name = name
    for key, value in (quotas or {}).items():
        if key not in Customer.QUOTA_FIELDS:
            raise ValidationFailed(details={"quotas": [f"Unknown quota {key!r}"]})
        if getattr(customer, key) != value:
            changes[key] = [getattr(customer, key), value]
            setattr(customer, key, value)
    if changes:
        customer.save()
    audit_record(actor=actor, action="customer.update", target=f"customer:{customer.pk}", customer=customer,
                 request=request, details={"changes": changes})
    return customer


def http_tool_hosts_checked(hosts) -> list[str]:
    """The allow-list as stored (lower-case, each once, in the order given), or validation_error naming the entry."""
    if not isinstance(hosts, list):
        raise ValidationFailed(details={"http_tool_hosts": ["Must be a list of host names, *.domain or IP addresses"]})
    if len(hosts) > httptools.MAX_HOSTS:
        raise ValidationFailed(details={"http_tool_hosts": [f"At most {httptools.MAX_HOSTS} entries"]})
    cleaned = [h.strip().lower().rstrip(".") if isinstance(h, str) else h for h in hosts]
    problems = {f"http_tool_hosts[{i}]": [p] for i, h in enumerate(cleaned) if (p := httptools.host_entry_problem(h))}
    if problems:
        raise ValidationFailed(details=problems)
    return list(dict.fromkeys(cleaned))


@transaction.atomic
def customer_delete(*, actor, customer: Customer, request=None) -> Customer:
    """Soft delete: access and work end now, the record stays CUSTOMER_RETENTION_DAYS, then is purged.

    The customer's users are deactivated (their tokens and logins are refused), its API keys revoked,
    its queued tasks cancelled and its running sandboxes killed (on commit). Nothing is deleted here:
    tasks.purge.customer_purge_deleted does that later, in bounded batches, off the request path.
    """
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if customer.deleted_at is not None:
        raise NotFound("Customer not found")
    now = timezone.now()
    customer.deleted_at = now
    customer.save(update_fields=["deleted_at"])
    deactivated = 0
    for user in get_user_model().objects.filter(membership__customer=customer, is_staff=False, is_active=True):
        user.is_active = False
        user.save(update_fields=["is_active"])  # a save, so that every token of the user ends (accounts.tokens)
        deactivated += 1
    revoked = ApiKey.objects.filter(customer=customer, revoked_at__isnull=True).update(revoked_at=now)
    signals.customer_deleted.send(sender=Customer, customer=customer)  # tasks: queued ones end, running ones stop
    purge_after = now + timedelta(days=settings.CUSTOMER_RETENTION_DAYS)
    audit_record(actor=actor, action="customer.delete", target=f"customer:{customer.pk}", request=request,
                 details={"name": customer.name, "users_deactivated": deactivated, "api_keys_revoked": revoked,
                          "purge_after": purge_after.isoformat()})
    return customer


@transaction.atomic
def token_logout(*, raw_refresh: str, scope: str, request=None) -> None:
    """End a refresh token of `scope` (customer or admin): it is blacklisted and refused from then on."""
    from rest_framework_simplejwt.settings import api_settings as jwt_settings

    refresh = tokens.refresh_token_parse(raw_refresh, scope)
    refresh.blacklist()
    user = get_user_model().objects.filter(pk=refresh.get(jwt_settings.USER_ID_CLAIM)).first()
    plane = "admin" if scope == "admin" else "auth"
    audit_record(actor=user or "anonymous", action=f"{plane}.logout", target=f"user:{getattr(user, 'username', '')}",
                 request=request)


# Stream rows written per statement when a notice goes to every customer.
NOTICE_BATCH = 500


def customer_notice_publish(*, customer_id: int | None, payload: dict) -> dict[int, int]:
    """Put a notice on a customer's `/ws/events/` stream (customer None: on every customer's) with the
    stream's next seq, and push it live once stored. Returns {customer id: seq}.

    Every sender of customer-level frames (task status changes, broadcasts, killswitch notices) goes
    through here, so a client that reconnects with the last seq it saw gets what it missed. Call it either
    inside the transaction of the change it announces (the notice commits with it, or not at all: one write
    transaction, not two; tasks do this, as late in their transaction as they can, since the stream's row
    stays locked until the commit) or once it committed (from transaction.on_commit). The live frame goes
    out only after the commit either way.
    """
    return customer_notices_publish(notices=[(customer_id, payload)])[0]


def customer_notices_publish(*, notices: list[tuple[int | None, dict]],
                             also_send: list[tuple[str, dict]] = ()) -> list[dict[int, int]]:
    """Several notices, in this order, in one transaction (the task ends of a killswitch or of a worker's
    batch): as customer_notice_publish, one {customer id: seq} per notice.

    also_send: other live frames (group, message) of the same change, sent after the commit with the notices'
    own, in one delivery (each delivery is a hop to an event loop and Redis round trips)."""

    named = {cid for cid, _ in notices if cid is not None}
    everyone = any(cid is None for cid, _ in notices)
    if not everyone:
        return _customer_notices_publish_named(notices, named, list(also_send))
    in_scope = Q(pk__in=named) | Q(deleted_at__isnull=True) if everyone else Q(pk__in=named)
    with transaction.atomic():
        missing = Customer.objects.filter(in_scope, stream__isnull=True).values_list("pk", flat=True)
        CustomerStream.objects.bulk_create([CustomerStream(customer_id=pk) for pk in missing], ignore_conflicts=True,
                                           batch_size=NOTICE_BATCH)
        # Locked in customer order: two publishers never deadlock, and each one's seqs commit in order.
        locked = (CustomerStream.objects.select_for_update(of=("self",))
                  .filter(customer_id__in=Customer.objects.filter(in_scope).values("pk")).order_by("customer_id")
                  .values_list("customer_id", "last_seq", "customer__deleted_at"))
        last, live = {}, []
        for cid, last_seq, deleted_at in locked:
            last[cid] = last_seq
            if deleted_at is None:
                live.append(cid)
        published, rows = [], []
        for cid, payload in notices:
            seqs = {}
            for target in (live if cid is None else [cid] if cid in last else []):
                last[target] += 1
                seqs[target] = last[target]
                rows.append(CustomerNotice(customer_id=target, seq=last[target], payload=payload))
            published.append(seqs)
        if not rows:
            if also_send:
                transaction.on_commit(lambda: realtime.send_many(list(also_send)))
            return published
        bumped = {row.customer_id for row in rows}
        CustomerStream.objects.bulk_update([CustomerStream(customer_id=c, last_seq=last[c]) for c in sorted(bumped)],
                                           ["last_seq"], batch_size=NOTICE_BATCH)
        CustomerNotice.objects.bulk_create(rows, batch_size=NOTICE_BATCH)

        frames = list(also_send)
        for (cid, payload), seqs in zip(notices, published):
            if cid is None:  # one frame for every customer, with each one's seq (msgpack maps want string keys)
                group, message = realtime.customer_frame(None, payload)
                frames.append((group, {**message, "seqs": {str(c): seq for c, seq in seqs.items()}}))
            elif seqs:
                frames.append(realtime.customer_frame(cid, {**payload, "seq": seqs[cid]}))
        transaction.on_commit(lambda: realtime.send_many(frames))
    return published


def _customer_notices_publish_named(notices: list[tuple[int, dict]], named: set[int],
                                   frames: list[tuple[str, dict]]) -> list[dict[int, int]]:
    """customer_notices_publish when every notice names its customer (a task's status changes): each stream's
    seqs are taken with one UPDATE ... RETURNING (which also locks its row until the commit), in customer
    order, and the notices inserted together: two statements for one customer, where locking, reading and
    writing back the stream took four."""
    wanted = Counter(cid for cid, _ in notices)
    last = {}
    table = connection.ops.quote_name(CustomerStream._meta.db_table)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for cid in sorted(named):
            sql = f"UPDATE {table} SET last_seq = last_seq + %s WHERE customer_id = %s RETURNING last_seq"
            cursor.execute(sql, [wanted[cid], cid])
            row = cursor.fetchone()
            if row is None:  # the customer's first notice (or a customer gone: nothing to publish)
                if not Customer.objects.filter(pk=cid).exists():
                    continue
                CustomerStream.objects.bulk_create([CustomerStream(customer_id=cid)], ignore_conflicts=True)
                cursor.execute(sql, [wanted[cid], cid])
                row = cursor.fetchone()
            last[cid] = row[0] - wanted[cid]
        published, rows = [], []
        for cid, payload in notices:
            if cid not in last:
                published.append({})
                continue
            last[cid] += 1
            published.append({cid: last[cid]})
            rows.append(CustomerNotice(customer_id=cid, seq=last[cid], payload=payload))
            frames.append(realtime.customer_frame(cid, {**payload, "seq": last[cid]}))
        if rows:
            CustomerNotice.objects.bulk_create(rows, batch_size=NOTICE_BATCH)
        if frames:
            transaction.on_commit(lambda: realtime.send_many(frames))
    return published


def customer_notices_prune(*, keep: int | None = None, slack: int = 100) -> int:
    """Delete each customer's notices older than its newest `keep` (CUSTOMER_STREAM_KEEP). A stream is
    pruned once `slack` more have piled up, so each pass deletes a range through the (customer, seq) index
    and the reaper's frequent passes cost one small query when there is nothing to do. Returns the rows deleted."""
    keep = settings.CUSTOMER_STREAM_KEEP if keep is None else keep
    deleted = 0
    due = CustomerStream.objects.filter(last_seq__gt=F("pruned_through") + keep + slack).values_list("customer_id", "last_seq")
    for customer_id, last_seq in due[:NOTICE_BATCH]:
        upto = last_seq - keep
        with transaction.atomic():
            count, _ = CustomerNotice.objects.filter(customer_id=customer_id, seq__lte=upto).delete()
            CustomerStream.objects.filter(customer_id=customer_id, pruned_through__lt=upto).update(pruned_through=upto)
        deleted += count
    return deleted
