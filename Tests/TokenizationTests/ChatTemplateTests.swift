// Chat templates against transformers' apply_chat_template / jinja2 renderings (chat-goldens.json),
// and the Jinja subset on its own.
import TestFixtures
import Testing
@testable import Tokenization

private func messages(_ c: Fixtures.ChatGoldens.Conversation) -> [ChatMessage] {
    c.messages.map { ChatMessage(role: $0.role, content: $0.content) }
}

@Test func storedTemplatesMatchGoldens() throws {
    let goldens = try Fixtures.chatGoldens.get()
    let cases: [(String, Tokenizer, KeyPath<Fixtures.ChatGoldens.Conversation, Fixtures.ChatGoldens.Rendered>)] = [
        ("tiny-llama json", try Fixtures.spJSON.get(), \.tiny_llama),
        ("tiny-llama gguf", try Fixtures.spGGUF.get(), \.tiny_llama),
        ("bytelevel", try Fixtures.byteLevel.get(), \.bytelevel),
        ("smollm2", try Fixtures.smolLM2Tokenizer.get(), \.smollm2),
    ]
    for (name, tokenizer, pick) in cases {
        for c in goldens.conversations {
            let expected = c[keyPath: pick]
            let prompt = try tokenizer.applyChatTemplate(messages(c), addGenerationPrompt: true)
            #expect(prompt.note == nil, "\(name): \(prompt.note ?? "")")
            #expect(prompt.text == expected.text, "\(name) \(c.name)")
            #expect(tokenizer.encode(prompt.text, addSpecialTokens: false) == expected.ids, "\(name) \(c.name) ids")
        }
    }
}

@Test func builtInTemplatesMatchGoldens() throws {
    let goldens = try Fixtures.chatGoldens.get()
    #expect(goldens.templates["tiny_llama"] == ChatTemplate.llama2.source)
    #expect(goldens.templates["bytelevel"] == ChatTemplate.chatML.source)
    for c in goldens.conversations {
        #expect(try ChatTemplate.llama2.render(messages(c), addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>") == c.tiny_llama.text)
        #expect(try ChatTemplate.chatML.render(messages(c), addGenerationPrompt: true, eosToken: "<|im_end|>") == c.bytelevel.text)
    }
}

@Test func llama2RejectsRolesOutOfOrder() throws {
    let m = [ChatMessage(role: "user", content: "a"), ChatMessage(role: "user", content: "b")]
    do {
        _ = try ChatTemplate.llama2.render(m, addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        Issue.record("expected an error")
    } catch let e as ChatTemplateError {
        #expect(e.kind == .raised)
        #expect(e.message == "Conversation roles must alternate user/assistant/user/assistant/...")
    }
}

@Test func smolLM2TemplateAddsDefaultSystemPrompt() throws {
    let t = try Fixtures.smolLM2Tokenizer.get()
    let p = try t.applyChatTemplate([ChatMessage(role: "user", content: "Hi")])
    #expect(p.text == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
}

@Test func badTemplatesAreSyntaxErrors() throws {
    #expect(throws: ChatTemplateError.self) { try ChatTemplate("{% for m in messages %}{{ m['content'] }") }
    #expect(throws: ChatTemplateError.self) { try ChatTemplate("{% if x %}no end") }
    #expect(throws: ChatTemplateError.self) { try ChatTemplate("{% frobnicate %}") }
}

// Every expected string below was checked with jinja2 3.1.6 (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loopcontrols; tojson as transformers defines it).
private func render(_ source: String, _ vars: [String: String] = [:], messages: [ChatMessage] = [],
                    generation: Bool = false) throws -> String {
    try ChatTemplate(source).render(messages, addGenerationPrompt: generation, bosToken: "<s>", eosToken: "</s>", variables: vars)
}

@Test func jinjaExpressions() throws {
    #expect(try render("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}") == "7|9|3|-4|2|3.5|1024")
    #expect(try render("{{ 'a' ~ 1 ~ none }}|{{ 'ab' * 2 }}|{{ 'x' if false else 'y' }}|{{ 'x' if true }}") == "a1None|abab|y|x")
    #expect(try render("{{ true and 'yes' }}|{{ 0 or 'no' }}|{{ not [] }}|{{ 1 < 2 < 3 }}|{{ 'b' in 'abc' }}|{{ 3 not in [1, 2] }}") == "yes|no|True|True|True|True")
    #expect(try render("{{ [1, 'a', none, true, 1.5] }}|{{ {'k': 'v'} }}|{{ 'it''s' }}") == "[1, 'a', None, True, 1.5]|{'k': 'v'}|its")
    #expect(try render("{{ '  x  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'Hello'.upper() }}|{{ 'abc'.startswith('ab') }}|{{ 'x'.join(['1', '2']) }}") == "x|['a', 'b', '', 'c']|['a', 'b']|HELLO|True|1x2")
    #expect(try render("{{ 'abcdef'[1:3] }}|{{ 'abcdef'[-2:] }}|{{ [1,2,3,4][::-1] }}|{{ 'abc'[0] }}|{{ [1,2,3][-1] }}") == "bc|ef|[4, 3, 2, 1]|a|3")
    #expect(try render("{{ '  x '|trim }}|{{ [1,2,3]|length }}|{{ 'abc'|upper }}|{{ undefined_name|default('d') }}|{{ [3,1,2]|sort|join(',') }}|{{ {'a': [1, 'é']}|tojson }}") == "x|3|ABC|d|1,2,3|{\"a\": [1, \"é\"]}")
    #expect(try render("{{ x is defined }}|{{ y is not defined }}|{{ none is none }}|{{ 4 is even }}|{{ 'a' is string }}", ["x": "1"]) == "True|True|True|True|True")
}

@Test func jinjaStatementsAndScoping() throws {
    let ms = [ChatMessage(role: "system", content: "S"), ChatMessage(role: "user", content: "U"), ChatMessage(role: "assistant", content: "A")]
    #expect(try render("{% for m in messages %}{{ loop.index0 }}{{ m.role[0] }}{% if loop.first %}F{% elif loop.last %}L{% else %}-{% endif %}{% endfor %}", messages: ms) == "0sF1u-2aL")
    #expect(try render("{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{% endfor %}{{ x }}") == "1")
    #expect(try render("{% set ns = namespace(x=1) %}{% for i in range(3) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}") == "4")
    #expect(try render("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}") == "02")
    #expect(try render("{% for m in messages if m.role != 'system' %}{{ m.content }}{% else %}none{% endfor %}", messages: ms) == "UA")
    #expect(try render("{% for m in messages %}{% endfor %}{% for x in [] %}{% else %}empty{% endfor %}") == "empty")
    #expect(try render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}") == "a=1;b=2;")
    #expect(try render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bo') }} {{ greet('Al', punct='?') }}") == "Hi Bo! Hi Al?")
    #expect(try render("{% set block %}in{{ 1 }}{% endset %}[{{ block }}]") == "[in1]")
    #expect(try render("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join }}", messages: ms) == "U")
    #expect(try render("{# comment #}{{ bos_token }}{{ eos_token }}") == "<s></s>")
}

@Test func jinjaWhitespaceControl() throws {
    // trim_blocks and lstrip_blocks as transformers sets them, and explicit - / +.
    #expect(try render("{% if true %}\nyes\n{% endif %}\n") == "yes\n")
    #expect(try render("a\n    {% if true %}\n    b\n    {% endif %}\nc") == "a\n    b\nc")
    #expect(try render("a  {{- ' b ' -}}  c") == "a b c")
    #expect(try render("a\n  {%- if true -%}  \n b {%- endif %}") == "ab")
    #expect(try render("x {%+ if true %}y{% endif %}") == "x y")
    #expect(try render("{# c #}\nz") == "z")
}

@Test func jinjaErrorsAreErrors() throws {
    #expect(throws: ChatTemplateError.self) { try render("{{ 'a' + 1 }}") }
    #expect(throws: ChatTemplateError.self) { try render("{{ missing + 'x' }}") }
    #expect(throws: ChatTemplateError.self) { try render("{{ 'a'|nosuchfilter }}") }
    #expect(throws: ChatTemplateError.self) { try render("{{ 1 // 0 }}") }
    #expect(throws: ChatTemplateError.self) { try render("{{ 'unterminated }}") }
    #expect(throws: ChatTemplateError.self) { try render("{% for x in %}{% endfor %}") }
    #expect(throws: ChatTemplateError.self) { try render("{% endif %}") }
}
