// Generated with HF tokenizers 0.23.3 by the Python script at the end of this file (save it as a .py
// file and run it from the repository root; it needs tokenizers, gguf and the SmolLM2 GGUF). Do not edit by hand.
// text, then for each pipeline: encode(text, add_special_tokens=False).ids and decode(ids).

struct PipelineGolden { let text: String; let ids: [String: [Int32]]; let decoded: [String: String] }

let pipelineVocabularyLimit = 6000

let pipelineGoldens: [PipelineGolden] = [
    PipelineGolden(text: "",
                   ids: ["llama3": [], "qwen2": [], "metaspaceFirst": [], "metaspaceAlways": []],
                   decoded: ["llama3": "", "qwen2": "", "metaspaceFirst": "", "metaspaceAlways": ""]),
    PipelineGolden(text: " ",
                   ids: ["llama3": [216], "qwen2": [216], "metaspaceFirst": [388], "metaspaceAlways": [388]],
                   decoded: ["llama3": " ", "qwen2": " ", "metaspaceFirst": "", "metaspaceAlways": ""]),
    PipelineGolden(text: "   ",
                   ids: ["llama3": [333], "qwen2": [333], "metaspaceFirst": [259, 388], "metaspaceAlways": [259, 388]],
                   decoded: ["llama3": "   ", "qwen2": "   ", "metaspaceFirst": "  ", "metaspaceAlways": " "]),
    PipelineGolden(text: "a",
                   ids: ["llama3": [81], "qwen2": [81], "metaspaceFirst": [264], "metaspaceAlways": [264]],
                   decoded: ["llama3": "a", "qwen2": "a", "metaspaceFirst": "a", "metaspaceAlways": "a"]),
    PipelineGolden(text: "\n",
                   ids: ["llama3": [198], "qwen2": [198], "metaspaceFirst": [388, 13], "metaspaceAlways": [388, 13]],
                   decoded: ["llama3": "\n", "qwen2": "\n", "metaspaceFirst": "\n", "metaspaceAlways": "\n"]),
    PipelineGolden(text: "\r\n",
                   ids: ["llama3": [2738], "qwen2": [2738], "metaspaceFirst": [388, 16, 13], "metaspaceAlways": [388, 16, 13]],
                   decoded: ["llama3": "\r\n", "qwen2": "\r\n", "metaspaceFirst": "\r\n", "metaspaceAlways": "\r\n"]),
    PipelineGolden(text: " hello",
                   ids: ["llama3": [704, 5365], "qwen2": [704, 5365], "metaspaceFirst": [388, 263, 397, 320], "metaspaceAlways": [388, 263, 397, 320]],
                   decoded: ["llama3": " hello", "qwen2": " hello", "metaspaceFirst": "hello", "metaspaceAlways": "hello"]),
    PipelineGolden(text: "hello ",
                   ids: ["llama3": [255, 764, 95, 216], "qwen2": [255, 764, 95, 216], "metaspaceFirst": [388, 263, 397, 320, 388], "metaspaceAlways": [388, 263, 397, 320, 388]],
                   decoded: ["llama3": "hello ", "qwen2": "hello ", "metaspaceFirst": "hello ", "metaspaceAlways": "hello "]),
    PipelineGolden(text: "  hello  ",
                   ids: ["llama3": [216, 704, 5365, 256], "qwen2": [216, 704, 5365, 256], "metaspaceFirst": [259, 263, 397, 320, 259], "metaspaceAlways": [259, 263, 397, 320, 259]],
                   decoded: ["llama3": "  hello  ", "qwen2": "  hello  ", "metaspaceFirst": " hello  ", "metaspaceAlways": "hello  "]),
    PipelineGolden(text: "Hello, world!",
                   ids: ["llama3": [56, 478, 95, 28, 905, 17], "qwen2": [56, 478, 95, 28, 905, 17], "metaspaceFirst": [388, 441, 279, 320, 402, 277, 281, 397, 401, 436], "metaspaceAlways": [388, 441, 279, 320, 402, 277, 281, 397, 401, 436]],
                   decoded: ["llama3": "Hello, world!", "qwen2": "Hello, world!", "metaspaceFirst": "Hello, world!", "metaspaceAlways": "Hello, world!"]),
    PipelineGolden(text: "The quick brown fox jumps over the lazy dog.",
                   ids: ["llama3": [504, 2365, 278, 2697, 275, 1324, 544, 382, 851, 690, 260, 303, 1437, 105, 2767, 30], "qwen2": [504, 2365, 278, 2697, 275, 1324, 544, 382, 851, 690, 260, 303, 1437, 105, 2767, 30], "metaspaceFirst": [348, 388, 330, 395, 400, 412, 286, 340, 417, 392, 266, 394, 429, 388, 474, 403, 328, 393, 388, 394, 346, 269, 283, 391, 459, 411, 303, 394, 408, 406], "metaspaceAlways": [348, 388, 330, 395, 400, 412, 286, 340, 417, 392, 266, 394, 429, 388, 474, 403, 328, 393, 388, 394, 346, 269, 283, 391, 459, 411, 303, 394, 408, 406]],
                   decoded: ["llama3": "The quick brown fox jumps over the lazy dog.", "qwen2": "The quick brown fox jumps over the lazy dog.", "metaspaceFirst": "The quick brown fox jumps over the lazy dog.", "metaspaceAlways": "The quick brown fox jumps over the lazy dog."]),
    PipelineGolden(text: "multiple   spaces   between   words",
                   ids: ["llama3": [93, 481, 2005, 256, 5600, 256, 826, 256, 1924], "qwen2": [93, 481, 2005, 256, 5600, 256, 826, 256, 1924], "metaspaceFirst": [291, 403, 397, 390, 395, 405, 299, 259, 265, 405, 293, 268, 259, 286, 280, 417, 389, 278, 259, 277, 281, 401, 393], "metaspaceAlways": [291, 403, 397, 390, 395, 405, 299, 259, 265, 405, 293, 268, 259, 286, 280, 417, 389, 278, 259, 277, 281, 401, 393]],
                   decoded: ["llama3": "multiple   spaces   between   words", "qwen2": "multiple   spaces   between   words", "metaspaceFirst": "multiple   spaces   between   words", "metaspaceAlways": "multiple   spaces   between   words"]),
    PipelineGolden(text: "a\tb",
                   ids: ["llama3": [81, 197, 82], "qwen2": [81, 197, 82], "metaspaceFirst": [264, 460, 413], "metaspaceAlways": [264, 460, 413]],
                   decoded: ["llama3": "a\tb", "qwen2": "a\tb", "metaspaceFirst": "a\tb", "metaspaceAlways": "a\tb"]),
    PipelineGolden(text: "\t\tindented with tabs",
                   ids: ["llama3": [197, 197, 526, 293, 277, 351, 252, 369, 99], "qwen2": [197, 197, 526, 293, 277, 351, 252, 369, 99], "metaspaceFirst": [388, 460, 460, 261, 401, 278, 390, 389, 401, 352, 260, 384, 393], "metaspaceAlways": [388, 460, 460, 261, 401, 278, 390, 389, 401, 352, 260, 384, 393]],
                   decoded: ["llama3": "\t\tindented with tabs", "qwen2": "\t\tindented with tabs", "metaspaceFirst": "\t\tindented with tabs", "metaspaceAlways": "\t\tindented with tabs"]),
    PipelineGolden(text: "    indented with four spaces",
                   ids: ["llama3": [333, 641, 293, 277, 351, 1876, 5600], "qwen2": [333, 641, 293, 277, 351, 1876, 5600], "metaspaceFirst": [271, 261, 401, 278, 390, 389, 401, 352, 266, 394, 295, 265, 405, 293, 268], "metaspaceAlways": [271, 261, 401, 278, 390, 389, 401, 352, 266, 394, 295, 265, 405, 293, 268]],
                   decoded: ["llama3": "    indented with four spaces", "qwen2": "    indented with four spaces", "metaspaceFirst": "   indented with four spaces", "metaspaceAlways": "indented with four spaces"]),
    PipelineGolden(text: "line1\r\nline2",
                   ids: ["llama3": [1311, 33, 2738, 1311, 34], "qwen2": [1311, 33, 2738, 1311, 34], "metaspaceFirst": [283, 261, 389, 420, 16, 13, 397, 261, 389, 419], "metaspaceAlways": [283, 261, 389, 420, 16, 13, 397, 261, 389, 419]],
                   decoded: ["llama3": "line1\r\nline2", "qwen2": "line1\r\nline2", "metaspaceFirst": "line1\r\nline2", "metaspaceAlways": "line1\r\nline2"]),
    PipelineGolden(text: "\n\n\n",
                   ids: ["llama3": [1116, 198], "qwen2": [1116, 198], "metaspaceFirst": [388, 13, 13, 13], "metaspaceAlways": [388, 13, 13, 13]],
                   decoded: ["llama3": "\n\n\n", "qwen2": "\n\n\n", "metaspaceFirst": "\n\n\n", "metaspaceAlways": "\n\n\n"]),
    PipelineGolden(text: "para one.\n\npara two.",
                   ids: ["llama3": [1095, 81, 582, 30, 1116, 1095, 81, 827, 30], "qwen2": [1095, 81, 582, 30, 1116, 1095, 81, 827, 30], "metaspaceFirst": [284, 305, 391, 318, 389, 406, 13, 13, 405, 305, 391, 260, 417, 394, 406], "metaspaceAlways": [284, 305, 391, 318, 389, 406, 13, 13, 405, 305, 391, 260, 417, 394, 406]],
                   decoded: ["llama3": "para one.\n\npara two.", "qwen2": "para one.\n\npara two.", "metaspaceFirst": "para one.\n\npara two.", "metaspaceAlways": "para one.\n\npara two."]),
    PipelineGolden(text: " \n \n ",
                   ids: ["llama3": [3717, 3717, 216], "qwen2": [3717, 3717, 216], "metaspaceFirst": [388, 13, 388, 13, 388], "metaspaceAlways": [388, 13, 388, 13, 388]],
                   decoded: ["llama3": " \n \n ", "qwen2": " \n \n ", "metaspaceFirst": "\n \n ", "metaspaceAlways": "\n \n "]),
    PipelineGolden(text: "a \n b",
                   ids: ["llama3": [81, 3717, 278], "qwen2": [81, 3717, 278], "metaspaceFirst": [264, 388, 13, 286], "metaspaceAlways": [264, 388, 13, 286]],
                   decoded: ["llama3": "a \n b", "qwen2": "a \n b", "metaspaceFirst": "a \n b", "metaspaceAlways": "a \n b"]),
    PipelineGolden(text: "end with spaces   ",
                   ids: ["llama3": [486, 351, 5600, 333], "qwen2": [486, 351, 5600, 333], "metaspaceFirst": [307, 274, 352, 265, 405, 293, 268, 259, 388], "metaspaceAlways": [307, 274, 352, 265, 405, 293, 268, 259, 388]],
                   decoded: ["llama3": "end with spaces   ", "qwen2": "end with spaces   ", "metaspaceFirst": "end with spaces   ", "metaspaceAlways": "end with spaces   "]),
    PipelineGolden(text: "123",
                   ids: ["llama3": [33, 34, 35], "qwen2": [33, 34, 35], "metaspaceFirst": [388, 420, 419, 437], "metaspaceAlways": [388, 420, 419, 437]],
                   decoded: ["llama3": "123", "qwen2": "123", "metaspaceFirst": "123", "metaspaceAlways": "123"]),
    PipelineGolden(text: "1234",
                   ids: ["llama3": [33, 34, 35, 36], "qwen2": [33, 34, 35, 36], "metaspaceFirst": [388, 420, 419, 437, 435], "metaspaceAlways": [388, 420, 419, 437, 435]],
                   decoded: ["llama3": "1234", "qwen2": "1234", "metaspaceFirst": "1234", "metaspaceAlways": "1234"]),
    PipelineGolden(text: "12345",
                   ids: ["llama3": [33, 34, 35, 36, 37], "qwen2": [33, 34, 35, 36, 37], "metaspaceFirst": [388, 420, 419, 437, 435, 438], "metaspaceAlways": [388, 420, 419, 437, 435, 438]],
                   decoded: ["llama3": "12345", "qwen2": "12345", "metaspaceFirst": "12345", "metaspaceAlways": "12345"]),
    PipelineGolden(text: "9876543210123456789",
                   ids: ["llama3": [41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41], "qwen2": [41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41], "metaspaceFirst": [388, 443, 445, 472, 463, 438, 435, 437, 419, 420, 409, 420, 419, 437, 435, 438, 463, 472, 445, 443], "metaspaceAlways": [388, 443, 445, 472, 463, 438, 435, 437, 419, 420, 409, 420, 419, 437, 435, 438, 463, 472, 445, 443]],
                   decoded: ["llama3": "9876543210123456789", "qwen2": "9876543210123456789", "metaspaceFirst": "9876543210123456789", "metaspaceAlways": "9876543210123456789"]),
    PipelineGolden(text: "3.14159",
                   ids: ["llama3": [35, 30, 33, 36, 33, 37, 41], "qwen2": [35, 30, 33, 36, 33, 37, 41], "metaspaceFirst": [388, 437, 406, 420, 435, 420, 438, 443], "metaspaceAlways": [388, 437, 406, 420, 435, 420, 438, 443]],
                   decoded: ["llama3": "3.14159", "qwen2": "3.14159", "metaspaceFirst": "3.14159", "metaspaceAlways": "3.14159"]),
    PipelineGolden(text: "1,000,000",
                   ids: ["llama3": [33, 28, 32, 32, 32, 28, 32, 32, 32], "qwen2": [33, 28, 32, 32, 32, 28, 32, 32, 32], "metaspaceFirst": [388, 420, 402, 409, 409, 409, 402, 409, 409, 409], "metaspaceAlways": [388, 420, 402, 409, 409, 409, 402, 409, 409, 409]],
                   decoded: ["llama3": "1,000,000", "qwen2": "1,000,000", "metaspaceFirst": "1,000,000", "metaspaceAlways": "1,000,000"]),
    PipelineGolden(text: "in 2023 there were 365 days",
                   ids: ["llama3": [254, 216, 34, 32, 34, 35, 665, 592, 216, 35, 38, 37, 2009], "qwen2": [254, 216, 34, 32, 34, 35, 665, 592, 216, 35, 38, 37, 2009], "metaspaceFirst": [308, 388, 419, 409, 419, 437, 269, 262, 277, 389, 262, 388, 437, 463, 438, 303, 385, 393], "metaspaceAlways": [308, 388, 419, 409, 419, 437, 269, 262, 277, 389, 262, 388, 437, 463, 438, 303, 385, 393]],
                   decoded: ["llama3": "in 2023 there were 365 days", "qwen2": "in 2023 there were 365 days", "metaspaceFirst": "in 2023 there were 365 days", "metaspaceAlways": "in 2023 there were 365 days"]),
    PipelineGolden(text: "abc123def456",
                   ids: ["llama3": [369, 83, 33, 34, 35, 1604, 36, 37, 38], "qwen2": [369, 83, 33, 34, 35, 1604, 36, 37, 38], "metaspaceFirst": [264, 413, 400, 420, 419, 437, 401, 389, 404, 435, 438, 463], "metaspaceAlways": [264, 413, 400, 420, 419, 437, 401, 389, 404, 435, 438, 463]],
                   decoded: ["llama3": "abc123def456", "qwen2": "abc123def456", "metaspaceFirst": "abc123def456", "metaspaceAlways": "abc123def456"]),
    PipelineGolden(text: "!!!???...",
                   ids: ["llama3": [17, 17, 17, 47, 47, 47, 2026], "qwen2": [17, 17, 17, 47, 47, 47, 2026], "metaspaceFirst": [388, 436, 436, 436, 447, 447, 447, 359, 406], "metaspaceAlways": [388, 436, 436, 436, 447, 447, 447, 359, 406]],
                   decoded: ["llama3": "!!!???...", "qwen2": "!!!???...", "metaspaceFirst": "!!!???...", "metaspaceAlways": "!!!???..."]),
    PipelineGolden(text: "(hello)",
                   ids: ["llama3": [24, 255, 764, 95, 25], "qwen2": [24, 255, 764, 95, 25], "metaspaceFirst": [388, 415, 263, 397, 320, 416], "metaspaceAlways": [388, 415, 263, 397, 320, 416]],
                   decoded: ["llama3": "(hello)", "qwen2": "(hello)", "metaspaceFirst": "(hello)", "metaspaceAlways": "(hello)"]),
    PipelineGolden(text: "https://example.com/path?query=1&x=2#frag",
                   ids: ["llama3": [4687, 1742, 888, 2201, 30, 824, 31, 1537, 47, 385, 1467, 45, 33, 22, 104, 45, 34, 19, 86, 1808], "qwen2": [4687, 1742, 888, 2201, 30, 824, 31, 1537, 47, 385, 1467, 45, 33, 22, 104, 45, 34, 19, 86, 1808], "metaspaceFirst": [388, 322, 390, 405, 393, 410, 422, 422, 327, 285, 405, 299, 406, 400, 290, 422, 405, 273, 398, 447, 330, 275, 411, 421, 420, 462, 429, 421, 419, 476, 404, 396, 391, 408], "metaspaceAlways": [388, 322, 390, 405, 393, 410, 422, 422, 327, 285, 405, 299, 406, 400, 290, 422, 405, 273, 398, 447, 330, 275, 411, 421, 420, 462, 429, 421, 419, 476, 404, 396, 391, 408]],
                   decoded: ["llama3": "https://example.com/path?query=1&x=2#frag", "qwen2": "https://example.com/path?query=1&x=2#frag", "metaspaceFirst": "https://example.com/path?query=1&x=2#frag", "metaspaceAlways": "https://example.com/path?query=1&x=2#frag"]),
    PipelineGolden(text: "def add(a, b):\n    return a + b\n",
                   ids: ["llama3": [1604, 803, 24, 81, 28, 278, 727, 198, 333, 1003, 253, 1232, 278, 198], "qwen2": [1604, 803, 24, 81, 28, 278, 727, 198, 333, 1003, 253, 1232, 278, 198], "metaspaceFirst": [370, 404, 264, 401, 401, 415, 391, 402, 286, 380, 13, 271, 262, 325, 264, 388, 453, 286, 13], "metaspaceAlways": [370, 404, 264, 401, 401, 415, 391, 402, 286, 380, 13, 271, 262, 325, 264, 388, 453, 286, 13]],
                   decoded: ["llama3": "def add(a, b):\n    return a + b\n", "qwen2": "def add(a, b):\n    return a + b\n", "metaspaceFirst": "def add(a, b):\n    return a + b\n", "metaspaceAlways": "def add(a, b):\n    return a + b\n"]),
    PipelineGolden(text: "    }\n}\n",
                   ids: ["llama3": [333, 4029, 198, 109, 198], "qwen2": [333, 4029, 198, 109, 198], "metaspaceFirst": [271, 424, 13, 424, 13], "metaspaceAlways": [271, 424, 13, 424, 13]],
                   decoded: ["llama3": "    }\n}\n", "qwen2": "    }\n}\n", "metaspaceFirst": "   }\n}\n", "metaspaceAlways": "}\n}\n"]),
    PipelineGolden(text: "\u{4f60}\u{597d}\u{ff0c}\u{4e16}\u{754c}\u{ff01}",
                   ids: ["llama3": [175, 138, 250, 176, 115, 138, 186, 137, 230, 175, 133, 240, 178, 239, 230, 186, 137, 219], "qwen2": [175, 138, 250, 176, 115, 138, 186, 137, 230, 175, 133, 240, 178, 239, 230, 186, 137, 219], "metaspaceFirst": [388, 510, 511, 242, 191, 143, 231, 187, 153, 234, 152, 143, 242, 191, 132], "metaspaceAlways": [388, 510, 511, 242, 191, 143, 231, 187, 153, 234, 152, 143, 242, 191, 132]],
                   decoded: ["llama3": "\u{4f60}\u{597d}\u{ff0c}\u{4e16}\u{754c}\u{ff01}", "qwen2": "\u{4f60}\u{597d}\u{ff0c}\u{4e16}\u{754c}\u{ff01}", "metaspaceFirst": "\u{4f60}\u{597d}\u{ff0c}\u{4e16}\u{754c}\u{ff01}", "metaspaceAlways": "\u{4f60}\u{597d}\u{ff0c}\u{4e16}\u{754c}\u{ff01}"]),
    PipelineGolden(text: "\u{4eca}\u{65e5}\u{306f}\u{3044}\u{3044}\u{5929}\u{6c17}\u{3067}\u{3059}\u{306d}\u{3002}",
                   ids: ["llama3": [175, 136, 228, 177, 241, 115, 174, 219, 124, 174, 219, 222, 174, 219, 222, 176, 114, 119, 177, 125, 241, 174, 219, 117, 174, 219, 243, 174, 219, 251, 174, 218, 220], "qwen2": [175, 136, 228, 177, 241, 115, 174, 219, 124, 174, 219, 222, 174, 219, 222, 176, 114, 119, 177, 125, 241, 174, 219, 117, 174, 219, 243, 174, 219, 251, 174, 218, 220], "metaspaceFirst": [388, 509, 233, 154, 168, 488, 482, 482, 490, 233, 179, 154, 503, 475, 230, 132, 176, 452], "metaspaceAlways": [388, 509, 233, 154, 168, 488, 482, 482, 490, 233, 179, 154, 503, 475, 230, 132, 176, 452]],
                   decoded: ["llama3": "\u{4eca}\u{65e5}\u{306f}\u{3044}\u{3044}\u{5929}\u{6c17}\u{3067}\u{3059}\u{306d}\u{3002}", "qwen2": "\u{4eca}\u{65e5}\u{306f}\u{3044}\u{3044}\u{5929}\u{6c17}\u{3067}\u{3059}\u{306d}\u{3002}", "metaspaceFirst": "\u{4eca}\u{65e5}\u{306f}\u{3044}\u{3044}\u{5929}\u{6c17}\u{3067}\u{3059}\u{306d}\u{3002}", "metaspaceAlways": "\u{4eca}\u{65e5}\u{306f}\u{3044}\u{3044}\u{5929}\u{6c17}\u{3067}\u{3059}\u{306d}\u{3002}"]),
    PipelineGolden(text: "Mixed English \u{548c}\u{4e2d}\u{6587} and \u{65e5}\u{672c}\u{8a9e}",
                   ids: ["llama3": [61, 1088, 277, 2321, 216, 176, 236, 230, 175, 133, 251, 177, 240, 225, 284, 216, 177, 241, 115, 177, 246, 122, 179, 120, 248], "qwen2": [61, 1088, 277, 2321, 216, 176, 236, 230, 175, 133, 251, 177, 240, 225, 284, 216, 177, 241, 115, 177, 246, 122, 179, 120, 248], "metaspaceFirst": [388, 456, 395, 429, 389, 401, 388, 426, 392, 408, 397, 395, 393, 398, 388, 232, 149, 143, 231, 187, 176, 233, 153, 138, 288, 388, 233, 154, 168, 233, 159, 175, 235, 173, 161], "metaspaceAlways": [388, 456, 395, 429, 389, 401, 388, 426, 392, 408, 397, 395, 393, 398, 388, 232, 149, 143, 231, 187, 176, 233, 153, 138, 288, 388, 233, 154, 168, 233, 159, 175, 235, 173, 161]],
                   decoded: ["llama3": "Mixed English \u{548c}\u{4e2d}\u{6587} and \u{65e5}\u{672c}\u{8a9e}", "qwen2": "Mixed English \u{548c}\u{4e2d}\u{6587} and \u{65e5}\u{672c}\u{8a9e}", "metaspaceFirst": "Mixed English \u{548c}\u{4e2d}\u{6587} and \u{65e5}\u{672c}\u{8a9e}", "metaspaceAlways": "Mixed English \u{548c}\u{4e2d}\u{6587} and \u{65e5}\u{672c}\u{8a9e}"]),
    PipelineGolden(text: "\u{1f600}\u{1f603}\u{1f604}",
                   ids: ["llama3": [187, 249, 242, 218, 187, 249, 242, 221, 187, 249, 242, 222], "qwen2": [187, 249, 242, 218, 187, 249, 242, 221, 187, 249, 242, 222], "metaspaceFirst": [388, 243, 162, 155, 131, 243, 162, 155, 134, 243, 162, 155, 135], "metaspaceAlways": [388, 243, 162, 155, 131, 243, 162, 155, 134, 243, 162, 155, 135]],
                   decoded: ["llama3": "\u{1f600}\u{1f603}\u{1f604}", "qwen2": "\u{1f600}\u{1f603}\u{1f604}", "metaspaceFirst": "\u{1f600}\u{1f603}\u{1f604}", "metaspaceAlways": "\u{1f600}\u{1f603}\u{1f604}"]),
    PipelineGolden(text: "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{200d}\u{1f466}",
                   ids: ["llama3": [187, 249, 235, 118, 321, 231, 187, 249, 235, 119, 321, 231, 187, 249, 235, 117, 321, 231, 187, 249, 235, 116], "qwen2": [187, 249, 235, 118, 321, 231, 187, 249, 235, 119, 321, 231, 187, 249, 235, 117, 321, 231, 187, 249, 235, 116], "metaspaceFirst": [388, 243, 162, 148, 171, 501, 243, 162, 148, 172, 501, 243, 162, 148, 170, 501, 243, 162, 148, 169], "metaspaceAlways": [388, 243, 162, 148, 171, 501, 243, 162, 148, 172, 501, 243, 162, 148, 170, 501, 243, 162, 148, 169]],
                   decoded: ["llama3": "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{200d}\u{1f466}", "qwen2": "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{200d}\u{1f466}", "metaspaceFirst": "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{200d}\u{1f466}", "metaspaceAlways": "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}\u{200d}\u{1f466}"]),
    PipelineGolden(text: "caf\u{e9}",
                   ids: ["llama3": [83, 1939, 2756], "qwen2": [83, 1939, 2756], "metaspaceFirst": [276, 391, 404, 481], "metaspaceAlways": [276, 391, 404, 481]],
                   decoded: ["llama3": "caf\u{e9}", "qwen2": "caf\u{e9}", "metaspaceFirst": "caf\u{e9}", "metaspaceAlways": "caf\u{e9}"]),
    PipelineGolden(text: "cafe\u{301}",
                   ids: ["llama3": [83, 1939, 85, 151, 219], "qwen2": [83, 1939, 2756], "metaspaceFirst": [276, 391, 404, 389, 207, 132], "metaspaceAlways": [276, 391, 404, 389, 207, 132]],
                   decoded: ["llama3": "cafe\u{301}", "qwen2": "caf\u{e9}", "metaspaceFirst": "cafe\u{301}", "metaspaceAlways": "cafe\u{301}"]),
    PipelineGolden(text: "e\u{301}",
                   ids: ["llama3": [85, 151, 219], "qwen2": [2756], "metaspaceFirst": [307, 207, 132], "metaspaceAlways": [307, 207, 132]],
                   decoded: ["llama3": "e\u{301}", "qwen2": "\u{e9}", "metaspaceFirst": "e\u{301}", "metaspaceAlways": "e\u{301}"]),
    PipelineGolden(text: "A\u{30a} vs \u{c5}",
                   ids: ["llama3": [49, 151, 228, 386, 99, 5549, 223], "qwen2": [142, 223, 386, 99, 5549, 223], "metaspaceFirst": [365, 207, 141, 312, 393, 388, 198, 136], "metaspaceAlways": [365, 207, 141, 312, 393, 388, 198, 136]],
                   decoded: ["llama3": "A\u{30a} vs \u{c5}", "qwen2": "\u{c5} vs \u{c5}", "metaspaceFirst": "A\u{30a} vs \u{c5}", "metaspaceAlways": "A\u{30a} vs \u{c5}"]),
    PipelineGolden(text: "\u{395}\u{3bb}\u{3bb}\u{3b7}\u{3bd}\u{3b9}\u{3ba}\u{3ac}",
                   ids: ["llama3": [153, 239, 153, 136, 153, 136, 153, 132, 153, 138, 153, 134, 153, 135, 153, 122], "qwen2": [153, 239, 153, 136, 153, 136, 153, 132, 153, 138, 153, 134, 153, 135, 153, 122], "metaspaceFirst": [388, 209, 152, 497, 497, 209, 186, 209, 192, 209, 188, 209, 189, 495], "metaspaceAlways": [388, 209, 152, 497, 497, 209, 186, 209, 192, 209, 188, 209, 189, 495]],
                   decoded: ["llama3": "\u{395}\u{3bb}\u{3bb}\u{3b7}\u{3bd}\u{3b9}\u{3ba}\u{3ac}", "qwen2": "\u{395}\u{3bb}\u{3bb}\u{3b7}\u{3bd}\u{3b9}\u{3ba}\u{3ac}", "metaspaceFirst": "\u{395}\u{3bb}\u{3bb}\u{3b7}\u{3bd}\u{3b9}\u{3ba}\u{3ac}", "metaspaceAlways": "\u{395}\u{3bb}\u{3bb}\u{3b7}\u{3bd}\u{3b9}\u{3ba}\u{3ac}"]),
    PipelineGolden(text: "\u{bd} \u{bc} \u{be}",
                   ids: ["llama3": [141, 138, 216, 141, 137, 216, 141, 139], "qwen2": [141, 138, 216, 141, 137, 216, 141, 139], "metaspaceFirst": [388, 197, 192, 388, 197, 191, 388, 197, 193], "metaspaceAlways": [388, 197, 192, 388, 197, 191, 388, 197, 193]],
                   decoded: ["llama3": "\u{bd} \u{bc} \u{be}", "qwen2": "\u{bd} \u{bc} \u{be}", "metaspaceFirst": "\u{bd} \u{bc} \u{be}", "metaspaceAlways": "\u{bd} \u{bc} \u{be}"]),
    PipelineGolden(text: "\u{216b}",
                   ids: ["llama3": [173, 223, 121], "qwen2": [173, 223, 121], "metaspaceFirst": [388, 229, 136, 174], "metaspaceAlways": [388, 229, 136, 174]],
                   decoded: ["llama3": "\u{216b}", "qwen2": "\u{216b}", "metaspaceFirst": "\u{216b}", "metaspaceAlways": "\u{216b}"]),
    PipelineGolden(text: "It's a dog's life, isn't it?",
                   ids: ["llama3": [1589, 506, 253, 2767, 506, 1029, 28, 3247, 982, 357, 47], "qwen2": [1589, 506, 253, 2767, 506, 1029, 28, 3247, 982, 357, 47], "metaspaceFirst": [302, 390, 418, 393, 264, 303, 394, 408, 418, 393, 283, 395, 404, 389, 402, 347, 392, 418, 390, 337, 447], "metaspaceAlways": [302, 390, 418, 393, 264, 303, 394, 408, 418, 393, 283, 395, 404, 389, 402, 347, 392, 418, 390, 337, 447]],
                   decoded: ["llama3": "It's a dog's life, isn't it?", "qwen2": "It's a dog's life, isn't it?", "metaspaceFirst": "It's a dog's life, isn't it?", "metaspaceAlways": "It's a dog's life, isn't it?"]),
    PipelineGolden(text: "I'd've done it if I'd known.",
                   ids: ["llama3": [57, 23, 84, 3543, 2294, 357, 585, 339, 23, 84, 1343, 30], "qwen2": [57, 23, 84, 3543, 2294, 357, 585, 339, 23, 84, 1343, 30], "metaspaceFirst": [302, 418, 401, 418, 357, 303, 267, 389, 337, 270, 404, 302, 418, 401, 323, 392, 394, 417, 392, 406], "metaspaceAlways": [302, 418, 401, 418, 357, 303, 267, 389, 337, 270, 404, 302, 418, 401, 323, 392, 394, 417, 392, 406]],
                   decoded: ["llama3": "I'd've done it if I'd known.", "qwen2": "I'd've done it if I'd known.", "metaspaceFirst": "I'd've done it if I'd known.", "metaspaceAlways": "I'd've done it if I'd known."]),
    PipelineGolden(text: "DON'T",
                   ids: ["llama3": [52, 2154, 23, 68], "qwen2": [52, 2154, 23, 68], "metaspaceFirst": [366, 433, 466, 418, 430], "metaspaceAlways": [366, 433, 466, 418, 430]],
                   decoded: ["llama3": "DON'T", "qwen2": "DON'T", "metaspaceFirst": "DON'T", "metaspaceAlways": "DON'T"]),
    PipelineGolden(text: "YOU'RE",
                   ids: ["llama3": [73, 63, 69, 23, 3256], "qwen2": [73, 63, 69, 23, 3256], "metaspaceFirst": [388, 450, 383, 418, 439, 426], "metaspaceAlways": [388, 450, 383, 418, 439, 426]],
                   decoded: ["llama3": "YOU'RE", "qwen2": "YOU'RE", "metaspaceFirst": "YOU'RE", "metaspaceAlways": "YOU'RE"]),
    PipelineGolden(text: "x'S y",
                   ids: ["llama3": [104, 23, 67, 329], "qwen2": [104, 23, 67, 329], "metaspaceFirst": [388, 429, 418, 431, 332], "metaspaceAlways": [388, 429, 418, 431, 332]],
                   decoded: ["llama3": "x'S y", "qwen2": "x'S y", "metaspaceFirst": "x'S y", "metaspaceAlways": "x'S y"]),
    PipelineGolden(text: "'LL",
                   ids: ["llama3": [23, 60, 60], "qwen2": [23, 60, 60], "metaspaceFirst": [388, 418, 455, 455], "metaspaceAlways": [388, 418, 455, 455]],
                   decoded: ["llama3": "'LL", "qwen2": "'LL", "metaspaceFirst": "'LL", "metaspaceAlways": "'LL"]),
    PipelineGolden(text: "Y'all'd've",
                   ids: ["llama3": [73, 23, 449, 23, 84, 3543], "qwen2": [73, 23, 449, 23, 84, 3543], "metaspaceFirst": [388, 450, 418, 272, 397, 418, 401, 418, 357], "metaspaceAlways": [388, 450, 418, 272, 397, 418, 401, 418, 357]],
                   decoded: ["llama3": "Y'all'd've", "qwen2": "Y'all'd've", "metaspaceFirst": "Y'all'd've", "metaspaceAlways": "Y'all'd've"]),
    PipelineGolden(text: "don\u{2019}t (curly apostrophe)",
                   ids: ["llama3": [84, 258, 417, 100, 365, 1855, 318, 4606, 474, 1561, 255, 25], "qwen2": [84, 258, 417, 100, 365, 1855, 318, 4606, 474, 1561, 255, 25], "metaspaceFirst": [303, 267, 229, 131, 156, 390, 388, 415, 400, 295, 397, 411, 264, 405, 394, 289, 340, 405, 263, 416], "metaspaceAlways": [303, 267, 229, 131, 156, 390, 388, 415, 400, 295, 397, 411, 264, 405, 394, 289, 340, 405, 263, 416]],
                   decoded: ["llama3": "don\u{2019}t (curly apostrophe)", "qwen2": "don\u{2019}t (curly apostrophe)", "metaspaceFirst": "don\u{2019}t (curly apostrophe)", "metaspaceAlways": "don\u{2019}t (curly apostrophe)"]),
    PipelineGolden(text: "<|im_start|>user\nhi<|im_end|>",
                   ids: ["llama3": [1, 4093, 198, 88, 89, 2], "qwen2": [1, 4093, 198, 88, 89, 2], "metaspaceFirst": [343, 480, 395, 399, 442, 289, 305, 390, 480, 428, 403, 393, 275, 13, 398, 395, 434, 480, 395, 399, 442, 389, 274, 480, 428], "metaspaceAlways": [343, 480, 395, 399, 442, 289, 305, 390, 480, 428, 403, 393, 275, 13, 398, 395, 434, 480, 395, 399, 442, 389, 274, 480, 428]],
                   decoded: ["llama3": "<|im_start|>user\nhi<|im_end|>", "qwen2": "<|im_start|>user\nhi<|im_end|>", "metaspaceFirst": "<|im_start|>user\nhi<|im_end|>", "metaspaceAlways": "<|im_start|>user\nhi<|im_end|>"]),
    PipelineGolden(text: "<s>hello</s>",
                   ids: ["llama3": [44, 99, 46, 255, 764, 95, 44, 31, 99, 46], "qwen2": [44, 99, 46, 255, 764, 95, 44, 31, 99, 46], "metaspaceFirst": [1, 263, 397, 320, 2], "metaspaceAlways": [1, 388, 263, 397, 320, 2]],
                   decoded: ["llama3": "<s>hello</s>", "qwen2": "<s>hello</s>", "metaspaceFirst": "<s>hello</s>", "metaspaceAlways": "<s> hello</s>"]),
    PipelineGolden(text: "Hello <s> world",
                   ids: ["llama3": [56, 478, 95, 2067, 99, 46, 905], "qwen2": [56, 478, 95, 2067, 99, 46, 905], "metaspaceFirst": [388, 441, 279, 320, 388, 1, 277, 281, 397, 401], "metaspaceAlways": [388, 441, 279, 320, 388, 1, 277, 281, 397, 401]],
                   decoded: ["llama3": "Hello <s> world", "qwen2": "Hello <s> world", "metaspaceFirst": "Hello <s> world", "metaspaceAlways": "Hello <s> world"]),
    PipelineGolden(text: " <|im_end|> ",
                   ids: ["llama3": [216, 2, 216], "qwen2": [216, 2, 216], "metaspaceFirst": [343, 480, 395, 399, 442, 389, 274, 480, 428, 388], "metaspaceAlways": [343, 480, 395, 399, 442, 389, 274, 480, 428, 388]],
                   decoded: ["llama3": " <|im_end|> ", "qwen2": " <|im_end|> ", "metaspaceFirst": "<|im_end|> ", "metaspaceAlways": "<|im_end|> "]),
    PipelineGolden(text: "\u{2581}\u{2581}hello",
                   ids: ["llama3": [173, 240, 219, 173, 240, 219, 255, 764, 95], "qwen2": [173, 240, 219, 173, 240, 219, 255, 764, 95], "metaspaceFirst": [259, 263, 397, 320], "metaspaceAlways": [259, 263, 397, 320]],
                   decoded: ["llama3": "\u{2581}\u{2581}hello", "qwen2": "\u{2581}\u{2581}hello", "metaspaceFirst": " hello", "metaspaceAlways": "hello"]),
    PipelineGolden(text: "word word word word word word word word word word ",
                   ids: ["llama3": [3002, 2229, 2229, 2229, 2229, 2229, 2229, 2229, 2229, 2229, 216], "qwen2": [3002, 2229, 2229, 2229, 2229, 2229, 2229, 2229, 2229, 2229, 216], "metaspaceFirst": [277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 388], "metaspaceAlways": [277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 277, 281, 401, 388]],
                   decoded: ["llama3": "word word word word word word word word word word ", "qwen2": "word word word word word word word word word word ", "metaspaceFirst": "word word word word word word word word word word ", "metaspaceAlways": "word word word word word word word word word word "]),
]

// The generator:
//
// # Run from the repository root. Generates Tests/TokenizationTests/PipelineGoldens.swift: ids from HF tokenizers for the
// # Llama-3 and Qwen2 byte-level pipelines and the non-legacy Metaspace SentencePiece pipeline.
// import copy, json, os
// from pathlib import Path
// import gguf
// from tokenizers import Tokenizer, AddedToken, pre_tokenizers, decoders, normalizers, Regex, processors
// from tokenizers.models import BPE
//
// ROOT = Path(os.environ.get("PETREL_ROOT", "."))  # the repository root
// FIX = ROOT / "Tests" / "Fixtures"
// CACHE = Path(os.environ.get("PETREL_CACHE", str(Path.home() / ".cache" / "petrel")))
// g = json.load(open(f"{FIX}/tokenizer-goldens.json"))
// allstrings = [e["text"] for e in g["strings"]]
// picks = [
//  "", " ", "   ", "a", "\n", "\r\n", " hello", "hello ", "  hello  ", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
//  "multiple   spaces   between   words", "a\tb", "\t\tindented with tabs", "    indented with four spaces", "line1\r\nline2",
//  "\n\n\n", "para one.\n\npara two.", " \n \n ", "a \n b", "end with spaces   ", "123", "1234", "12345", "9876543210123456789",
//  "3.14159", "1,000,000", "in 2023 there were 365 days", "abc123def456", "!!!???...", "(hello)", "https://example.com/path?query=1&x=2#frag",
//  "def add(a, b):\n    return a + b\n", "    }\n}\n", "你好，世界！", "今日はいい天気ですね。", "Mixed English 和中文 and 日本語",
//  "😀😃😄", "👨‍👩‍👧‍👦", "café", "cafe\u0301", "e\u0301", "A\u030a vs \u00c5", "Ελληνικά", "½ ¼ ¾", "Ⅻ",
//  "It's a dog's life, isn't it?", "I'd've done it if I'd known.", "DON'T", "YOU'RE", "x'S y", "'LL", "Y'all'd've", "don’t (curly apostrophe)",
//  "<|im_start|>user\nhi<|im_end|>", "<s>hello</s>", "Hello <s> world", " <|im_end|> ", "\u2581\u2581hello", "word " * 10,
// ]
// for p in picks:
//     assert p in allstrings or p in ("(hello)",), repr(p)
//
// LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
// QWEN2 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
//
// r = gguf.GGUFReader(str(CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
// toks = r.fields["tokenizer.ggml.tokens"].contents()
// types = r.fields["tokenizer.ggml.token_type"].contents()
// merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
// N = 6000
// vocab = {t: i for i, t in enumerate(toks[:N])}
// sub = [m for m in merges if m[0] in vocab and m[1] in vocab and (m[0] + m[1]) in vocab]
//
// def bytelevel(pattern, ignore_merges, nfc):
//     t = Tokenizer(BPE(vocab=vocab, merges=sub, ignore_merges=ignore_merges))
//     t.normalizer = normalizers.NFC() if nfc else None
//     t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
//                                                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
//     t.decoder = decoders.ByteLevel()
//     t.add_special_tokens([AddedToken(toks[i], special=True, normalized=False) for i in range(N) if types[i] == 3])
//     return t
//
// sp = json.load(open(f"{FIX}/tiny-llama/tokenizer.json"))
// def metaspace(prepend_scheme, metaspace_decoder):
//     j = copy.deepcopy(sp)
//     j["normalizer"] = None
//     j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": prepend_scheme, "split": False}
//     if metaspace_decoder:
//         j["decoder"] = {"type": "Sequence", "decoders": [{"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": prepend_scheme, "split": False},
//                                                            {"type": "ByteFallback"}, {"type": "Fuse"}]}
//     return Tokenizer.from_str(json.dumps(j)), j
//
// cases = {
//     "llama3": bytelevel(LLAMA3, True, False),
//     "qwen2": bytelevel(QWEN2, False, True),
// }
// ms_first, j_first = metaspace("first", False)
// ms_always, j_always = metaspace("always", True)
// cases["metaspaceFirst"] = ms_first
// cases["metaspaceAlways"] = ms_always
//
// def swift_str(s):
//     out = '"'
//     for ch in s:
//         c = ord(ch)
//         if ch == '"': out += '\\"'
//         elif ch == '\\': out += '\\\\'
//         elif ch == '\n': out += '\\n'
//         elif ch == '\r': out += '\\r'
//         elif ch == '\t': out += '\\t'
//         elif c < 0x20 or c > 0x7e: out += '\\u{%x}' % c
//         else: out += ch
//     return out + '"'
//
// lines = []
// lines.append("// Generated with HF tokenizers 0.23.3 by the Python script at the end of this file (save it as a .py")
// lines.append("// file and run it from the repository root; it needs tokenizers, gguf and the SmolLM2 GGUF). Do not edit by hand.")
// lines.append("// text, then for each pipeline: encode(text, add_special_tokens=False).ids and decode(ids).")
// lines.append("")
// lines.append("struct PipelineGolden { let text: String; let ids: [String: [Int32]]; let decoded: [String: String] }")
// lines.append("")
// lines.append(f"let pipelineVocabularyLimit = {N}")
// lines.append("")
// lines.append("let pipelineGoldens: [PipelineGolden] = [")
// for s in picks:
//     ids = {k: t.encode(s, add_special_tokens=False).ids for k, t in cases.items()}
//     dec = {k: cases[k].decode(ids[k], skip_special_tokens=False) for k in cases}
//     idstr = ", ".join(f'"{k}": {v}' for k, v in ids.items())
//     decstr = ", ".join(f'"{k}": {swift_str(v)}' for k, v in dec.items())
//     lines.append(f"    PipelineGolden(text: {swift_str(s)},\n                   ids: [{idstr}],\n                   decoded: [{decstr}]),")
// lines.append("]")
// script = open(__file__).read()
// lines += ["", "// The generator:", "//"] + [("// " + l).rstrip() for l in script.rstrip("\n").split("\n")]
// open(ROOT / "Tests" / "TokenizationTests" / "PipelineGoldens.swift", "w").write("\n".join(lines) + "\n")
// print(len(sub), "merges in subset")
