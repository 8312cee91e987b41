"""The widget's pure decisions (widget_js/src/core.js, util.js, protocol.js), run in Chromium
without a server: backoff, close codes, identify merging, the thread's ordering, gaps,
de-duplication, outbox and unread count."""

from tests.widget_js.support import core_page


async def test_backoff_grows_with_jitter_and_is_capped(context):
    page = await core_page(context)
    got = await page.evaluate("""() => ({
        low: [0, 1, 2, 3, 10, 40].map(a => backoffDelay(a, () => 0)),
        high: [0, 1, 2, 3, 10, 40].map(a => backoffDelay(a, () => 0.999999)),
        spread: new Set(Array.from({length: 50}, () => backoffDelay(4))).size,
    })""")
    # Half fixed, half random: [c/2, c] with c = min(30 s, 0.8 s * 2^attempt).
    assert got["low"] == [400, 800, 1600, 3200, 15000, 15000]
    assert got["high"] == [800, 1600, 3200, 6400, 30000, 30000]
    assert got["spread"] > 10          # jitter: clients do not reconnect in lockstep


async def test_close_codes_follow_the_documented_ranges(context):
    page = await core_page(context)
    actions = await page.evaluate("""() => {
        const out = {};
        for (const code of [4000, 4001, 4002, 4004, 4005, 4099, 4003, 4007, 4006, 4400, 4401, 4402, 4403, 4499,
                            1000, 1001, 1006, 1009, 1011, 1012, 1013]) {
            const a = closeAction(code);
            out[code] = a.then + (a.terminal ? '/terminal' : '') + (a.wait ? '/' + a.wait : '');
        }
        return out;
    }""")
    # docs/protocol.md: 4000-4099 reconnect (4003/4007 with a fresh token first, 4006 after
    # at least 5 s); 4400-4499 terminal: a new token at most once, then stop (widget.js).
    assert actions == {
        "4000": "reconnect", "4001": "reconnect", "4002": "reconnect", "4004": "reconnect", "4005": "reconnect",
        "4099": "reconnect", "4003": "reauth", "4007": "reauth", "4006": "reconnect/5000",
        "4400": "reauth/terminal", "4401": "reauth/terminal", "4402": "reauth/terminal", "4403": "reauth/terminal",
        "4499": "reauth/terminal",
        "1000": "reconnect", "1001": "reconnect", "1006": "reconnect", "1009": "reconnect", "1011": "reconnect",
        "1012": "reconnect", "1013": "reconnect",
    }


async def test_identify_keeps_documented_fields_and_merges_custom_data(context):
    page = await core_page(context)
    got = await page.evaluate("""() => {
        const warnings = [];
        const warn = w => warnings.push(w);
        const a = cleanIdentify({email: 'a@example.com', name: 'Ada', custom_data: {plan: 'pro', seats: 3},
                                 external_id: 42, evil: '<x>', phone: {n: 1}}, warn);
        const b = cleanIdentify({name: 'Ada L.', custom_data: {plan: null, team: 'ops'}, user_hash: 'ab'}, warn);
        return {a, merged: mergeIdentify(a, b), warnings, notObject: cleanIdentify('x', warn)};
    }""")
    assert got["a"] == {"email": "a@example.com", "name": "Ada", "custom_data": {"plan": "pro", "seats": 3},
                        "external_id": "42"}
    assert got["merged"] == {"email": "a@example.com", "name": "Ada L.", "external_id": "42", "user_hash": "ab",
                             "custom_data": {"plan": None, "seats": 3, "team": "ops"}}
    assert "identify: unknown field evil ignored" in got["warnings"]
    assert "identify: phone must be a string" in got["warnings"]
    assert got["notObject"] == {}


async def test_token_lifetime_comes_from_the_token_not_the_local_clock(context):
    page = await core_page(context)
    got = await page.evaluate("""() => {
        const b64 = o => btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\\+/g, '-').replace(/\\//g, '_');
        const token = 'h.' + b64({iat: 1000, exp: 1600, sub: 'é'.repeat(3)}) + '.s';
        return {life: tokenLifetime(token), bad: tokenLifetime('garbage'),
                at600: refreshDelay(600), at60: refreshDelay(60), at4: refreshDelay(4)};
    }""")
    assert got["life"] == 600
    assert got["bad"] is None
    assert got["at600"] == 480_000        # 80% of the lifetime
    assert got["at60"] == 40_000          # at least 20 s early
    assert got["at4"] == 2_500            # very short tokens: half of at least 5 s


async def test_thread_orders_deduplicates_and_keeps_the_resume_point(context):
    page = await core_page(context)
    got = await page.evaluate("""() => {
        const t = new Thread();
        t.reset('c1', 0);
        const m = (seq, mine, extra) => Object.assign({seq, id: 'm' + seq, cid: mine ? 'c' + seq : null,
                                                       type: mine ? 'incoming' : 'outgoing', mine, body: 'b' + seq}, extra);
        const r = [];
        r.push(t.add(m(1, true), true));
        r.push(t.add(m(3, false), true));     // seq 2 is a private note: shoppers never get it
        r.push(t.add(m(3, false), true));     // again (resume overlap)
        r.push(t.add(m(5, true), false));     // our own ack: seq 4 may still be on its way
        const afterAck = t.lastSeq;
        r.push(t.add(m(4, false), true));
        r.push(t.add(m(5, true), true));      // the fan-out of our own message
        r.push(t.add(m(3, false, {deleted: true}), true));   // tombstone of a known message
        return {r, order: t.seqs, afterAck, last: t.lastSeq, max: t.maxSeq, deleted: t.items[3].deleted,
                unread: t.unread()};
    }""")
    assert got["r"] == ["new", "new", "dup", "new", "new", "dup", "updated"]
    assert got["order"] == [1, 3, 4, 5]
    assert got["afterAck"] == 3            # resume would ask for everything after 3, so 4 is not lost
    assert got["last"] == 5 and got["max"] == 5
    assert got["deleted"] is True
    assert got["unread"] == 1              # seq 4 only: own messages and deleted ones do not count


async def test_history_pages_insert_in_order(context):
    page = await core_page(context)
    got = await page.evaluate("""() => {
        const t = new Thread();
        t.reset('c1', 95);
        const m = seq => ({seq, id: 'm' + seq, cid: null, type: 'outgoing', mine: false, body: ''});
        t.add(m(101), true);                               // a live event before the history answer
        [98, 99, 100].forEach(s => t.add(m(s), true));     // latest page
        [96, 97].forEach(s => t.add(m(s), true));          // an older page
        return {last: t.lastSeq, order: t.seqs, unread: t.unread(), lowest: t.lowestSeq()};
    }""")
    assert got["last"] == 101
    assert got["order"] == [96, 97, 98, 99, 100, 101]
    assert got["unread"] == 6 and got["lowest"] == 96


async def test_outbox_sends_in_order_and_waits_for_the_conversation(context):
    page = await core_page(context)
    got = await page.evaluate("""() => {
        const t = new Thread();
        t.reset(null, 0);
        const a = t.queue('one', 1), b = t.queue('two', 2), c = t.queue('three', 3);
        const beforeConversation = t.sendable().map(i => i.body);
        t.id = 'c1';
        const all = t.sendable();
        all.forEach(i => i.status = 'sending');
        const whileSending = t.sendable().length;
        t.requeue();
        const again = t.sendable().map(i => i.cid);
        b.status = 'failed';
        const skipFailed = t.sendable().map(i => i.body);
        const acked = t.add({seq: 1, id: 'x', cid: a.cid, type: 'incoming', mine: true, body: 'one'}, false);
        return {beforeConversation, whileSending, sameIds: again.join() === [a.cid, b.cid, c.cid].join(),
                skipFailed, acked, left: t.outbox.map(i => i.body), unique: new Set([a.cid, b.cid, c.cid]).size,
                pendingView: t.view(c), sentView: t.view(t.items[1])};
    }""")
    assert got["beforeConversation"] == ["one"]       # its ack names the conversation for the rest
    assert got["whileSending"] == 0
    assert got["sameIds"] is True                     # retries keep their client_msg_id
    assert got["skipFailed"] == ["one", "three"]
    assert got["left"] == ["two", "three"] and got["unique"] == 3
    assert got["pendingView"]["status"] == "sending" and got["pendingView"]["mine"] is True
    assert got["sentView"]["status"] == "sent" and got["sentView"]["key"] == got["sentView"]["key"]


async def test_colours_and_urls_are_sanitised(context):
    page = await core_page(context)
    got = await page.evaluate("""() => ({
        colours: ['#0F766E', '#abc', 'red', '#12345', '#123456;background:url(x)', null].map(safeColour),
        text: ['#ffffff', '#000000', '#0f766e', '#ffd400'].map(textOn),
        urls: ['https://a.example/x.png', 'http://a.example', 'javascript:alert(1)', 'data:image/png;base64,AA',
               '//a.example', 42].map(safeUrl),
    })""")
    assert got["colours"] == ["#0f766e", "#aabbcc", "#1f5eff", "#1f5eff", "#1f5eff", "#1f5eff"]
    assert got["text"] == ["#111111", "#ffffff", "#ffffff", "#111111"]
    assert got["urls"] == ["https://a.example/x.png", "http://a.example/", None, None, None, None]


async def test_message_normalisation_names_agents_and_never_keeps_deleted_text(context):
    page = await core_page(context)
    got = await page.evaluate("""() => {
        const agents = {u1: {id: 'u1', name: 'Alice', avatar_url: 'https://a.example/a.png'}};
        const base = {conversation_id: 'c', seq: 4, id: 'i', client_msg_id: 'k', type: 'outgoing',
                      author_kind: 'member', author_id: 'u1', body: 'hi', meta: {}, deleted: false,
                      created_at: 1736935200000};
        return {
            agent: normaliseMessage(base, agents, 'Shop'),
            unknown: normaliseMessage(Object.assign({}, base, {author_id: 'u9'}), agents, 'Shop').author,
            api: normaliseMessage(Object.assign({}, base, {author_kind: 'api'}), agents, 'Shop').author,
            mine: normaliseMessage(Object.assign({}, base, {author_kind: 'contact', type: 'incoming'}), agents, 'Shop'),
            deleted: normaliseMessage(Object.assign({}, base, {deleted: true, body: 'secret'}), agents, 'Shop').body,
            junk: [null, {}, {seq: '1'}].map(x => normaliseMessage(x, agents, 'Shop')),
        };
    }""")
    assert got["agent"]["author"] == "Alice" and got["agent"]["mine"] is False and got["agent"]["cid"] is None
    assert got["unknown"] == "Shop" and got["api"] == "Shop"
    assert got["mine"]["mine"] is True and got["mine"]["cid"] == "k"
    assert got["deleted"] == ""
    assert got["junk"] == [None, None, None]
