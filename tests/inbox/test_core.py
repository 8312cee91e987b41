"""The inbox's pure modules (store, protocol, format, router) run in Chromium without a server:
the page imports them from admin_api/inbox through a routed origin. Where the inbox repeats a
server rule (tag names, close codes), the test compares it with the server's own code."""

from __future__ import annotations

import json
import mimetypes

import pytest

from engine.events import normalise_tag
from gateway.errors import ERRORS, RECONNECT_RANGE, TERMINAL_RANGE
from tests.inbox.conftest import ROOT

pytestmark = pytest.mark.browser

INBOX = ROOT / "admin_api" / "inbox"
ORIGIN = "http://inbox.test"


@pytest.fixture
async def core(browsers):
    ctx = await browsers.new()

    async def serve(route):
        path = route.request.url[len(ORIGIN):].split("?")[0].lstrip("/")
        if path == "blank.html":
            await route.fulfill(body="<!DOCTYPE html><title>core</title>", content_type="text/html")
            return
        file = (INBOX / path).resolve()
        if INBOX not in file.parents or not file.is_file():
            await route.fulfill(status=404, body="")
            return
        await route.fulfill(body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0] or "text/plain")

    await ctx.route(ORIGIN + "/**", serve)
    page = await ctx.new_page()
    await page.goto(ORIGIN + "/blank.html")

    async def run(module: str, body: str, arg=None):
        return await page.evaluate(
            "async ([module, body, arg]) => { const m = await import(module); return await (new Function('m', 'arg', body))(m, arg); }",
            [f"/js/{module}.js", body, arg])

    return run


async def test_thread_orders_deduplicates_and_finds_gaps(core):
    result = await core("store", """
        const t = new m.Thread("c1");
        const out = [];
        const msg = (seq, extra) => ({conversation_id: "c1", seq, type: "incoming", author_kind: "contact", body: "m" + seq, ...extra});
        t.floorAt(4);                       // history started at 5: 1..4 are not a gap
        out.push(t.add(msg(5)), t.add(msg(7)), t.add(msg(5)), t.lastSeq);
        out.push(t.add(msg(6)), t.lastSeq, t.maxSeq, t.seqs.join(","));
        out.push(t.add({...msg(6), deleted: true}), t.items.get(6).body, t.markDeleted(6), t.markDeleted(9));
        return out;
    """)
    assert result == ["new", "gap", "dup", 5, "new", 7, 7, "5,6,7", "updated", "", None, None]


async def test_outbox_keeps_client_ids_across_retries_and_drops_on_delivery(core):
    result = await core("store", """
        const t = new m.Thread("c1");
        const a = t.queue("first", "reply"), b = t.queue("note", "note", {mentions: ["u1"]});
        const ids = [a.cid, b.cid];
        a.status = "sending"; b.status = "sending";
        const whileSending = t.sendable().length;
        t.requeue();
        const again = t.sendable().map(o => o.cid);
        t.add({conversation_id: "c1", seq: 1, cid: a.cid, type: "outgoing", author_kind: "member", body: "first"});
        return {ids, whileSending, again, left: t.outbox.map(o => o.cid), entries: t.entries().map(e => e.seq || e.cid)};
    """)
    assert result["whileSending"] == 0
    assert result["again"] == result["ids"]
    assert result["left"] == [result["ids"][1]]
    assert result["entries"] == [1, result["ids"][1]]
    assert len(set(result["ids"])) == 2 and all(len(i) >= 16 for i in result["ids"])


async def test_conversations_follow_views_filters_and_unread(core):
    result = await core("store", """
        const s = new m.Conversations();
        const me = "u-me";
        const snap = (id, extra) => m.normaliseConversation({id, status: "open", assignee_id: null, tags: [], contact_id: "k-" + id,
                                                              app_id: "a1", channel: "widget", seq: 0, rev: 1, created_at: 1000, ...extra});
        s.upsert(snap("c1", {assignee_id: me, tags: ["vip"]}));
        s.upsert(snap("c2", {status: "pending"}));
        s.upsert(snap("c3", {app_id: "a2"}));
        const ids = (f) => s.visible({...m.defaultFilter(), ...f}, me).map(c => c.id);
        const msg = (c, seq, type, at) => ({conversation_id: c, seq, type, author_kind: type === "incoming" ? "contact" : "member",
                                            author_id: "x", body: "b", meta: {}, at, deleted: false});
        s.applyMessage(msg("c3", 1, "incoming", 5000));
        s.applyMessage(msg("c1", 1, "incoming", 4000));
        s.applyMessage(msg("c1", 2, "note", 4500));
        s.applyMessage(msg("c1", 2, "note", 4500));           // the same event twice counts once
        s.applyMessage(msg("c1", 3, "incoming", 4600));
        const before = [s.unreadOf("c1"), s.unreadOf("c3"), JSON.stringify(s.unreadByView(me))];
        const cleared = s.markRead("c1", 3);
        const stale = s.markRead("c1", 2);
        s.applyUpdate({conversation: {id: "c3", status: "resolved", assignee_id: me, tags: [], contact_id: "k-c3", app_id: "a2",
                                      channel: "widget", seq: 1, rev: 3, created_at: 1000, deleted: false}, changes: ["status", "assignment"]});
        // A REST page from before that update (no revision) does not undo it ...
        s.upsert(m.normaliseConversation({id: "c3", status: "open", assignee_id: null, tags: [], last_seq: 1}));
        const afterOld = [s.get("c3").status, s.get("c3").assignee_id];
        s.applyUpdate({conversation: {id: "c2", status: "pending", deleted: true, rev: 2, seq: 0}, changes: ["deleted"]});
        return {
          all: ids({status: "all"}), open: ids({}), mine: ids({view: "mine", status: "all"}), unassigned: ids({view: "unassigned", status: "all"}),
          vip: ids({tag: "vip", status: "all"}), app2: ids({app: "a2", status: "all"}), before, cleared, stale,
          afterUnread: s.unreadOf("c1"), afterOld, gone: s.get("c2"),
          query: m.filterQuery({view: "unassigned", status: "open", tag: "vip", app: "a2"}, me).toString(),
          mineQuery: m.filterQuery({view: "mine", status: "all", tag: null, app: null}, me).toString(),
        };
    """)
    assert result["all"] == ["c3", "c1"]          # newest activity first; c2 was deleted
    assert result["open"] == ["c1"]
    assert result["mine"] == ["c3", "c1"]
    assert result["unassigned"] == []
    assert result["vip"] == ["c1"] and result["app2"] == ["c3"]
    assert result["before"] == [2, 1, json.dumps({"mine": 1, "unassigned": 1, "all": 2}, separators=(",", ":"))]
    assert result["cleared"] is True and result["stale"] is False and result["afterUnread"] == 0
    assert result["afterOld"] == ["resolved", "u-me"]
    assert result["gone"] is None
    assert result["query"] == "status=open&assignee_id=none&tag=vip&app_id=a2"
    assert result["mineQuery"] == "assignee_id=u-me"


async def test_a_list_reloaded_after_a_reconnect_wins_over_untouched_live_state(core):
    result = await core("store", """
        const s = new m.Conversations();
        s.applyUpdate({conversation: {id: "c1", status: "open", rev: 5, seq: 2}, changes: ["status"]});
        s.get("c1").touched = 1000;                        // last live event long ago
        s.upsert(m.normaliseConversation({id: "c1", status: "resolved", last_seq: 4}), {since: 2000});
        const reloaded = [s.get("c1").status, s.get("c1").seq];
        s.get("c1").touched = 3000;                        // a live event after the request started
        s.upsert(m.normaliseConversation({id: "c1", status: "pending", last_seq: 4}), {since: 2000});
        return {reloaded, kept: s.get("c1").status};
    """)
    assert result == {"reloaded": ["resolved", 4], "kept": "resolved"}


async def test_preview_from_a_one_message_history_page_counts_an_unread_shopper_message(core):
    result = await core("store", """
        const s = new m.Conversations();
        s.readSeq.set("c2", 4);
        s.upsert(m.normaliseConversation({id: "c1", status: "open", last_seq: 3}));
        s.upsert(m.normaliseConversation({id: "c2", status: "open", last_seq: 4}));
        const msg = (c, seq, type) => m.normaliseMessage({conversation_id: c, seq, type, author_kind: "contact", body: "hi <b>", created_at: 7000});
        s.setPreview("c1", msg("c1", 3, "incoming"));
        s.setPreview("c2", msg("c2", 4, "incoming"));
        return [s.get("c1").preview.body, s.unreadOf("c1"), s.unreadOf("c2"), s.get("c1").last_at];
    """)
    assert result == ["hi <b>", 1, 0, 7000]


async def test_unread_starts_from_the_higher_of_the_servers_and_the_browsers_read_position(core):
    result = await core("store", """
        const s = new m.Conversations();
        s.readSeq.set("local", 5);                     // this browser read further than the server knows
        s.readSeq.set("server", 1);                    // another browser of the member read further
        const page = (id, last_seq, read_seq) => m.normaliseConversation({id, status: "open", last_seq, read_seq});
        s.upsert(page("local", 5, 2));
        s.upsert(page("server", 6, 6));
        s.upsert(page("behind", 7, 4));                // read up to 4 of 7: the latest message is unread
        s.upsert(page("never", 3, null));
        const msg = (c, seq) => m.normaliseMessage({conversation_id: c, seq, type: "incoming", author_kind: "contact", body: "hi", created_at: 7000});
        for (const [id, seq] of [["local", 5], ["server", 6], ["behind", 7], ["never", 3]]) s.setPreview(id, msg(id, seq));
        const positions = ["local", "server", "behind", "never"].map((id) => [s.readSeq.get(id) || 0, s.unreadOf(id)]);
        // a read frame of another of the member's inboxes: clears only what it covers
        const partial = s.readElsewhere("behind", 6);
        const unreadAfterPartial = s.unreadOf("behind");
        const full = s.readElsewhere("behind", 7);
        const lower = s.readElsewhere("behind", 3);
        return {positions, partial, unreadAfterPartial, full, lower, final: [s.readSeq.get("behind"), s.unreadOf("behind")],
                normalised: [page("x", 1, 0).read_seq, page("x", 1, undefined).read_seq, page("x", 1, "7").read_seq]};
    """)
    assert result["positions"] == [[5, 0], [6, 0], [4, 1], [0, 1]]
    assert result["partial"] is False and result["unreadAfterPartial"] == 1
    assert result["full"] is True and result["lower"] is False and result["final"] == [7, 0]
    assert result["normalised"] == [0, None, None]


@pytest.mark.parametrize("raw", ["VIP Customer", "  refund  ", "über-Plan", "a--b", "---", "x" * 70, "Ünïcödé", "2024 Q1"])
async def test_tag_names_are_normalised_like_the_server(core, raw):
    assert await core("format", "return m.normaliseTag(arg);", raw) == normalise_tag(raw)


async def test_links_and_mentions_become_segments_never_markup(core):
    result = await core("format", """
        return {
          links: m.linkSegments("see https://ex.com/a?b=1, or javascript:alert(1) and http://x.y/z)."),
          at: [m.mentionAt("hi @Ad", 6), m.mentionAt("mail a@b", 8), m.mentionAt("@", 1)],
          cands: m.mentionCandidates([{user_id: "1", name: "Ada Lovelace", email: "ada@x"}, {user_id: "2", name: "Bob Adams", email: "bob@x"},
                                      {user_id: "3", name: "Carl", email: "adam@x"}], "ad").map(x => x.user_id),
          ids: m.mentionedIds("thanks @Ada Lovelace!", new Map([["1", "Ada Lovelace"], ["2", "Bob Adams"]])),
          segs: m.mentionSegments("@Ada Lovelace see this, not email@Ada Lovelace", ["Ada Lovelace", "Ada"]),
          initials: [m.initials("Ana Lima"), m.initials("ana@example.com"), m.initials(""), m.initials("émile zola")],
          names: [m.contactName({name: " ", email: "e@x"}), m.contactName(null, "abcdef123"), m.contactName({external_id: "42"})],
        };
    """)
    assert result["links"] == [{"text": "see "}, {"text": "https://ex.com/a?b=1", "href": "https://ex.com/a?b=1"},
                               {"text": ", or javascript:alert(1) and "}, {"text": "http://x.y/z", "href": "http://x.y/z"},
                               {"text": ")."}]
    assert result["at"] == [{"start": 3, "query": "Ad"}, None, {"start": 0, "query": ""}]
    assert result["cands"] == ["1", "2", "3"]
    assert result["ids"] == ["1"]
    assert result["segs"] == [{"text": "@Ada Lovelace", "mention": "Ada Lovelace"}, {"text": " see this, not email@Ada Lovelace"}]
    assert result["initials"] == ["AL", "A", "?", "ÉZ"]
    assert result["names"] == ["e@x", "Visitor abcdef", "42"]


async def test_every_close_code_of_the_gateway_gets_the_action_its_range_documents(core):
    codes = {spec.close_code: spec.code for spec in ERRORS.values() if spec.close_code is not None}
    actions = await core("protocol", """
        const out = {};
        for (const code of arg) out[code] = m.closeAction(code, "").then;
        out.expired = m.closeAction(4401, "auth_failed:expired").then;
        out.stale = m.closeAction(4401, "auth_failed:stale_token").then;
        out.forged = m.closeAction(4401, "auth_failed:bad_signature").then;
        for (const code of [1000, 1001, 1006, 1011, 1012, 1013, 1002, 1003, 1007, 1008]) out[code] = m.closeAction(code, "").then;
        out.flood = m.closeAction(4006, "").wait;
        return out;
    """, list(codes))
    for code, name in codes.items():
        action = actions[str(code)]
        if code in RECONNECT_RANGE:
            expected = "new_token" if name in ("token_expired", "reauthenticate") else "reconnect"
        elif code in TERMINAL_RANGE:
            expected = "signed_out" if name in ("token_revoked", "access_revoked") else "stop"
        else:
            expected = "stop"          # 1009: a frame too large is a bug, retrying cannot help
        assert action == expected, (code, name, action)
    assert actions["expired"] == actions["stale"] == "new_token" and actions["forged"] == "stop"
    assert all(actions[str(c)] == "reconnect" for c in (1000, 1001, 1006, 1011, 1012, 1013))
    assert all(actions[str(c)] == "stop" for c in (1002, 1003, 1007, 1008))
    assert actions["flood"] >= 5000


async def test_backoff_has_equal_jitter_within_a_cap_and_refresh_comes_before_expiry(core):
    result = await core("protocol", """
        const lo = [0, 1, 2, 3, 10, 40].map(a => m.backoffDelay(a, () => 0));
        const hi = [0, 1, 2, 3, 10, 40].map(a => m.backoffDelay(a, () => 1));
        const b64 = (o) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\\+/g, "-").replace(/\\//g, "_");
        const token = "x." + b64({iat: 1000, exp: 1900, sub: "ü"}) + ".sig";
        return {lo, hi, life: m.tokenLifetime(token), bad: m.tokenLifetime("nonsense"),
                refresh: [m.refreshDelay(900), m.refreshDelay(60), m.refreshDelay(0)]};
    """)
    assert result["lo"] == [250, 500, 1000, 2000, 7500, 7500]
    assert result["hi"] == [500, 1000, 2000, 4000, 15000, 15000]
    assert result["life"] == 900 and result["bad"] is None
    assert result["refresh"] == [720000, 30000, 5000]


async def test_routes_parse_and_build_both_ways(core):
    result = await core("router", """
        const id = "0b7a2a8e-8f25-4c57-9a55-6f9c2e0c8d11";
        const cases = ["/app/", "/app", "/app/inbox/mine", "/app/c/" + id, "/app/settings", "/app/settings/api-keys",
                       "/app/settings/apps/" + id, "/app/login", "/app/reset-password", "/app/c/nope", "/app/settings/../../x", "/elsewhere"];
        const parsed = cases.map(p => m.parse(p));
        const back = [m.href("conversation", {id}), m.href("inbox", {view: "all"}), m.href("settings", {section: "apps", id}), m.href("login")];
        const hist = {replaced: null, state: null, replaceState(s, t, url) { this.replaced = url; }};
        const token = m.takeFragmentToken({hash: "#token=abc_DEF-123", pathname: "/app/verify-email"}, hist);
        const none = m.takeFragmentToken({hash: "#other=1", pathname: "/app/x"}, hist);
        return {parsed, back, token, replaced: hist.replaced, none};
    """)
    names = [(p["name"], p["params"], p["public"]) for p in result["parsed"]]
    cid = "0b7a2a8e-8f25-4c57-9a55-6f9c2e0c8d11"
    assert names == [
        ("inbox", {}, False), ("inbox", {}, False), ("inbox", {"view": "mine"}, False), ("conversation", {"id": cid}, False),
        ("settings", {}, False), ("settings", {"section": "api-keys"}, False), ("settings", {"section": "apps", "id": cid}, False),
        ("login", {}, True), ("reset-password", {}, True), ("not_found", {}, True), ("not_found", {}, True), ("not_found", {}, True)]
    assert result["back"] == [f"/app/c/{cid}", "/app/inbox/all", f"/app/settings/apps/{cid}", "/app/login"]
    assert result["token"] == "abc_DEF-123" and result["replaced"] == "/app/verify-email" and result["none"] is None


async def test_qr_codes_match_reference_symbols_module_for_module(core):
    """tests/inbox/qr_reference.json: symbols made by the `qrcode` library (byte mode) for every
    error-correction level, several masks, versions 1 to 19 (version information from 7) and
    UTF-8 text; the enrolment dialog's code must be the same, module for module."""
    cases = json.loads((ROOT / "tests" / "inbox" / "qr_reference.json").read_text())
    result = await core("qr", """
        return arg.map(c => {
          const r = m.qrMatrix(c.text, {ecl: c.ecl, mask: c.mask});
          return {version: r.version, size: r.size, rows: r.modules.map(row => BigInt("0b" + row.map(b => b ? "1" : "0").join("")).toString(16))};
        });
    """, cases)
    for case, got in zip(cases, result):
        assert got["version"] == case["version"], (case["text"][:20], case["ecl"])
        assert got["size"] == case["version"] * 4 + 17
        assert got["rows"] == case["rows"], (case["text"][:20], case["ecl"], case["mask"])
    chosen = await core("qr", "return [0, 1, 2].map(() => m.qrMatrix(arg).mask);", cases[0]["text"])
    assert len(set(chosen)) == 1 and 0 <= chosen[0] <= 7      # the automatic mask is deterministic
