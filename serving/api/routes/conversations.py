"""The calling key's conversations."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import KeyDep, ServicesDep
from serving.api.errors import errors
from serving.api.schemas import ConversationDeleted, ConversationsOut, TurnsOut

router = APIRouter(tags=["conversations"])


@router.get("/v1/conversations", responses=errors())
def list_conversations(services: ServicesDep, key: KeyDep) -> ConversationsOut:
    """The key's conversations (latest 100), most recently updated first."""
    return ConversationsOut.model_validate(
        {"conversations": services.db.list_conversations(key.id)}
    )


@router.get("/v1/conversations/{conversation_id}", responses=errors(400, 404, 422))
def get_conversation(conversation_id: str, services: ServicesDep, key: KeyDep) -> TurnsOut:
    """Every turn of one of the key's conversations, oldest first."""
    turns = services.db.conversation_turns(conversation_id, key.id)
    return TurnsOut.model_validate({"conversation_id": conversation_id, "turns": turns})


@router.delete("/v1/conversations/{conversation_id}", responses=errors(400, 404, 422))
def delete_conversation(
    conversation_id: str, services: ServicesDep, key: KeyDep
) -> ConversationDeleted:
    """Delete one of the key's conversations (the audit log keeps its answers)."""
    services.db.delete_conversation(conversation_id, key.id)
    return ConversationDeleted(conversation_id=conversation_id)
