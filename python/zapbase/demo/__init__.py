"""The demo tenant's conversation, scripted (`zapbase demo`) or typed (`zapbase chat`),
played against a local stack: the simulator as the customer's phone, the worker, the
database. Nothing leaves localhost. A module per chapter; `script` plays them in turn."""

from zapbase.demo.chat import chat_session
from zapbase.demo.coaching import coaching_standin
from zapbase.demo.common import new_customer
from zapbase.demo.hotmart import hotmart_chapter
from zapbase.demo.script import demo_script, render_demo

__all__ = [
    "chat_session",
    "coaching_standin",
    "demo_script",
    "hotmart_chapter",
    "new_customer",
    "render_demo",
]
