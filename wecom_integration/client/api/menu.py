from wecom_integration.client.base import BaseAPI


class MenuAPI(BaseAPI):
    def create(self, agent_id, menu):
        """Replace the app's custom menu; ``menu`` is {"button": [...]} (≤3 buttons, ≤5 sub-buttons).

        https://developer.work.weixin.qq.com/document/path/90231
        """
        return self._post("menu/create", menu, params={"agentid": self._agent_id(agent_id)})

    def get(self, agent_id=None):
        """The app's custom menu: {"button": [...]}. https://developer.work.weixin.qq.com/document/path/90232"""
        return self._get("menu/get", {"agentid": self._agent_id(agent_id)})

    def delete(self, agent_id=None):
        """Remove the app's custom menu. https://developer.work.weixin.qq.com/document/path/90233"""
        return self._get("menu/delete", {"agentid": self._agent_id(agent_id)})
