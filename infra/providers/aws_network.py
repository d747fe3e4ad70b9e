"""A VPC across availability zones: public subnets (load balancers, NAT) and private subnets (nodes)."""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from infra.k8s import child


class Network(pulumi.ComponentResource):
    """VPC with one public and one private subnet per AZ and a NAT gateway for egress."""

    def __init__(self, name: str, cidr: str, zones: int, cluster_name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("testbed:aws:Network", name, None, opts)
        azs = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=self))
        blocks = list(ipaddress.ip_network(cidr).subnets(new_prefix=20))
        shared = {f"kubernetes.io/cluster/{cluster_name}": "shared"}

        self.vpc = aws.ec2.Vpc(
            name,
            cidr_block=cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": name, **shared},
            opts=child(self),
        )
        igw = aws.ec2.InternetGateway(name, vpc_id=self.vpc.id, tags={"Name": name}, opts=child(self))
        public_rt = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            opts=child(self),
        )

        self.public_subnet_ids: list[pulumi.Output[str]] = []
        self.private_subnet_ids: list[pulumi.Output[str]] = []
        private_subnets = []
        for i in range(zones):
            az = azs.names[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(blocks[i]),
                availability_zone=az,
                map_public_ip_on_launch=True,
                tags={"Name": f"{name}-public-{i}", "kubernetes.io/role/elb": "1", **shared},
                opts=child(self),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_rt.id, opts=child(self)
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                cidr_block=str(blocks[8 + i]),
                availability_zone=az,
                tags={"Name": f"{name}-private-{i}", "kubernetes.io/role/internal-elb": "1", **shared},
                opts=child(self),
            )
            self.public_subnet_ids.append(public.id)
            self.private_subnet_ids.append(private.id)
            private_subnets.append(private)

        eip = aws.ec2.Eip(f"{name}-nat", domain="vpc", opts=child(self))
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=eip.id,
            subnet_id=self.public_subnet_ids[0],
            tags={"Name": name},
            opts=child(self, depends_on=[igw]),
        )
        private_rt = aws.ec2.RouteTable(
            f"{name}-private",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
            opts=child(self),
        )
        for i, subnet in enumerate(private_subnets):
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=private_rt.id, opts=child(self)
            )
        self.cidr = cidr
        self.register_outputs({"vpc_id": self.vpc.id, "private_subnet_ids": self.private_subnet_ids})
