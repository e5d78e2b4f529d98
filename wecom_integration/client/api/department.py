from wecom_integration.client.base import BaseAPI


class DepartmentAPI(BaseAPI):
    def list(self, id=None):
        """Departments under ``id`` (recursively; the whole visible tree when None), with names.

        Blocked (48009) for contact-sync callers from new IPs since 2022; ``simplelist`` still works.
        https://developer.work.weixin.qq.com/document/path/90208
        """
        params = {"id": id} if id is not None else None
        return self._get("department/list", params)["department"]

    def simplelist(self, id=None):
        """Department ids under ``id`` (recursively): [{id, parentid, order}], no names.

        https://developer.work.weixin.qq.com/document/path/95350
        """
        params = {"id": id} if id is not None else None
        return self._get("department/simplelist", params)["department_id"]
