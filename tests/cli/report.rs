//! `pipe report`: one self-contained HTML page, its numbers, and a real headless browser.
